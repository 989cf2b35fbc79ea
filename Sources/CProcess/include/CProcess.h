#ifndef PENHA_CPROCESS_H
#define PENHA_CPROCESS_H

#include <sys/types.h>

/// Starts `path` (no PATH search) with `argv` and `envp` as a grandchild whose parent has
/// already exited, so that it is the init process's child (systemd's, as PID 1 or subreaper)
/// from the start: systemd supervises a MAINPID= that is its child, and not one that is
/// another process's. The grandchild runs in a session of its own with stdin and stdout on
/// /dev/null and `ready_source` as descriptor `ready_target`. Between fork and exec only
/// async-signal-safe calls run, which Swift cannot promise. Returns its pid, or -1 with errno.
pid_t penha_spawn_orphan(const char *path, char *const argv[], char *const envp[], int ready_source, int ready_target);

#endif
