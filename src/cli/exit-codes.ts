/** The exit-status table, shown by `mkt run --help` and in the man page. */
export const EXIT_TABLE = `Exit status:
  N      with --exec: the command's own status (128+N when a signal N killed it;
         141 when mkt's reader went away while it still wrote, as SIGPIPE does)
  N      interactive: the shell's exit status; 0 after Ctrl-A x
  2      invalid options
  124    --timeout expired
  125    mkt or the VM failed: qemu missing or failing, kernel rejected,
         guest kernel panic, guest died before the command ended
  128+N  mkt itself was stopped by signal N (130 for Ctrl-C)`;
