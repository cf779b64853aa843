/** The run spec mkt sends to mkt-init over the mkt.ctl port: NUL-separated key=value records. */
import { UsageError } from '../errors.js';

export type SpecRecord = readonly [key: string, value: string];

/** Encode records; the empty record at the end tells mkt-init the spec is complete. */
export function encodeSpec(records: readonly SpecRecord[]): Buffer {
  for (const [k, v] of records) {
    if (!/^[a-z]+$/.test(k)) throw new Error(`bad spec key ${k}`);
    if (v.includes('\0')) throw new UsageError(`${k} value contains a NUL byte, which cannot be passed to the guest`);
  }
  const spec = Buffer.from(records.map(([k, v]) => `${k}=${v}\0`).join('') + '\0', 'utf8');
  if (spec.length > SPEC_LIMIT) throw new UsageError(`the run is ${spec.length} bytes to describe to the guest, more than the ${SPEC_LIMIT} mkt-init reads: shorten the command or drop some --dir`);
  return spec;
}

/** What mkt-init's read_spec holds (its buffer, less the host clock record that leads the spec). */
export const SPEC_LIMIT = (1 << 20) - 64;

/** Decode an encoded spec (for tests and debugging). */
export function decodeSpec(buf: Buffer): SpecRecord[] {
  const text = buf.toString('utf8');
  if (!text.endsWith('\0\0') && text !== '\0') throw new Error('spec is not terminated');
  return text
    .slice(0, -2)
    .split('\0')
    .filter((r) => r !== '')
    .map((r) => {
      const i = r.indexOf('=');
      return [r.slice(0, i), r.slice(i + 1)] as const;
    });
}
