/** The one place that escapes values for qemu options and for shells. */

/** Escape a value inside a qemu `key=value,...` option string: commas are doubled. */
export function qemuValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** Build a qemu option string: `driver,key=value,...` with every value escaped. */
export function qemuOpts(head: string, props: Readonly<Record<string, string | number | boolean | undefined>>): string {
  const parts = [qemuValue(head)];
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined) continue;
    const s = typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v);
    parts.push(`${k}=${qemuValue(s)}`);
  }
  return parts.join(',');
}

/** Escape a value inside a FUSE-style -o option list (virtiofsd's -o source=...): backslash before \ and commas. */
export function fuseOptValue(value: string): string {
  return value.replace(/[\\,]/g, (c) => `\\${c}`);
}

/** Quote one word for a POSIX shell, so a printed command line can be pasted. */
export function shellQuote(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}
