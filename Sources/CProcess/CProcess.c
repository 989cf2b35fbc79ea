#define _GNU_SOURCE
#include "CProcess.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

pid_t penha_spawn_orphan(const char *path, char *const argv[], char *const envp[], int ready_source, int ready_target) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -1;
    pid_t middle = fork();
    if (middle < 0) {
        int saved = errno;
        close(report[0]);
        close(report[1]);
        errno = saved;
        return -1;
    }
    if (middle == 0) {
        pid_t child = fork();
        if (child == 0) {
            setsid();
            // The ready descriptor first: a starter run with stdin or stdout closed has its
            // pipe on 0 or 1, which /dev/null is about to replace.
            if (ready_source != ready_target) dup2(ready_source, ready_target);
            else fcntl(ready_target, F_SETFD, 0);
            int null = open("/dev/null", O_RDWR);
            if (null >= 0) {
                if (ready_target != 0) dup2(null, 0);
                if (ready_target != 1) dup2(null, 1);
                if (null > 2) close(null);
            }
            execve(path, argv, envp);
            _exit(127);
        }
        // The grandchild's pid, or the fork's errno as its negative.
        pid_t said = child > 0 ? child : -errno;
        ssize_t written = write(report[1], &said, sizeof said);
        _exit(written == sizeof said ? 0 : 1);
    }
    close(report[1]);
    pid_t child = 0;
    ssize_t got;
    do { got = read(report[0], &child, sizeof child); } while (got < 0 && errno == EINTR);
    close(report[0]);
    int status;
    while (waitpid(middle, &status, 0) < 0 && errno == EINTR) {}
    if (got != sizeof child) {
        errno = ECHILD;
        return -1;
    }
    if (child < 0) {
        errno = -child;
        return -1;
    }
    return child;
}
