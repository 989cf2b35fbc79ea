#ifndef PENHA_CENGINE_H
#define PENHA_CENGINE_H

// What the relay engine needs that Swift's Glibc module does not reach: epoll and eventfd.
// struct epoll_event is packed on x86_64, so events cross into Swift as two plain arrays.

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
// malloc_trim: the buffer pool returns a burst's memory to the kernel.
#include <malloc.h>
#include <sys/prctl.h>

// Names the calling thread (top -H, /proc/PID/task/TID/comm); 15 bytes at most are kept.
static inline void penha_name_thread(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

// The relay's per-connection calls go straight to the kernel through syscall(2): glibc's
// recv, send, accept4, connect, close and epoll_wait are pthread cancellation points, and
// each pays ~130 instructions of cancellation bookkeeping that nothing here uses (no
// thread is ever cancelled). Same arguments, results and errno as the glibc functions.
#include <unistd.h>
#include <sys/syscall.h>

static inline long penha_recv(int fd, void *buffer, size_t length) {
    return syscall(SYS_recvfrom, fd, buffer, length, 0, (void *)0, (void *)0);
}

static inline long penha_send(int fd, const void *buffer, size_t length) {
    return syscall(SYS_sendto, fd, buffer, length, MSG_NOSIGNAL, (void *)0, 0);
}

// The first bytes without taking them (a PROXY protocol header is read only once whole).
static inline long penha_peek(int fd, void *buffer, size_t length) {
    return syscall(SYS_recvfrom, fd, buffer, length, MSG_PEEK, (void *)0, (void *)0);
}

static inline int penha_close(int fd) { return (int)syscall(SYS_close, fd); }

static inline int penha_connect(int fd, const struct sockaddr *address, socklen_t length) {
    return (int)syscall(SYS_connect, fd, address, length);
}

// Registers fd once with the interest it will ever need (edge-triggered).
static inline int penha_epoll_add(int epoll, int fd, uint32_t events, uint64_t token) {
    struct epoll_event event = { .events = events, .data = { .u64 = token } };
    return epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event);
}

static inline int penha_epoll_remove(int epoll, int fd) {
    struct epoll_event unused = { 0 };
    return epoll_ctl(epoll, EPOLL_CTL_DEL, fd, &unused);
}

#define PENHA_EPOLL_BATCH 256

// Waits at most timeout_ms; returns how many events were copied out (at most PENHA_EPOLL_BATCH), or -1.
static inline int penha_epoll_wait(int epoll, uint64_t *tokens, uint32_t *events, int timeout_ms) {
    struct epoll_event ready[PENHA_EPOLL_BATCH];
#ifdef SYS_epoll_wait
    int count = (int)syscall(SYS_epoll_wait, epoll, ready, PENHA_EPOLL_BATCH, timeout_ms);
#else  // only epoll_pwait on aarch64: with no signal mask it is epoll_wait
    int count = (int)syscall(SYS_epoll_pwait, epoll, ready, PENHA_EPOLL_BATCH, timeout_ms, (void *)0, 8);
#endif
    for (int i = 0; i < count; i++) {
        tokens[i] = ready[i].data.u64;
        events[i] = ready[i].events;
    }
    return count;
}

static const uint32_t penha_epoll_in = EPOLLIN;
static const uint32_t penha_epoll_out = EPOLLOUT;
static const uint32_t penha_epoll_err = EPOLLERR;
static const uint32_t penha_epoll_hup = EPOLLHUP;
static const uint32_t penha_epoll_rdhup = EPOLLRDHUP;
static const uint32_t penha_epoll_et = EPOLLET;
static const uint32_t penha_epoll_exclusive = EPOLLEXCLUSIVE;
static const int penha_epoll_batch = PENHA_EPOLL_BATCH;

// accept4 is a GNU extension the Glibc module does not declare (and a cancellation point).
static inline int penha_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return (int)syscall(SYS_accept4, fd, address, length, flags);
}

// splice(2) and pipe2 are GNU extensions too: bulk transfers move through a kernel pipe.
#include <sys/types.h>
ssize_t splice(int in, __off64_t *in_offset, int out, __off64_t *out_offset, size_t length, unsigned int flags);
int pipe2(int fds[2], int flags);
static inline long penha_splice(int from, int to, size_t length) {
    return splice(from, 0, to, 0, length, 1 /* SPLICE_F_MOVE */ | 2 /* SPLICE_F_NONBLOCK */);
}
static inline int penha_pipe(int fds[2]) { return pipe2(fds, 04000 /* O_NONBLOCK */ | 02000000 /* O_CLOEXEC */); }

static inline int penha_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

// The handover between two penha processes (HandoverSocket): descriptors over SCM_RIGHTS,
// at most SCM_MAX_FD (253) a message, and the peer's credentials (SO_PEERCRED).
#define PENHA_MAX_DESCRIPTORS 253
static const int penha_max_descriptors = PENHA_MAX_DESCRIPTORS;
// sendmsg of `length` bytes with `count` descriptors (0 to PENHA_MAX_DESCRIPTORS), MSG_NOSIGNAL.
long penha_send_descriptors(int fd, const void *buffer, size_t length, const int *descriptors, int count);
// recvmsg of at most `length` bytes; the descriptors that came (close-on-exec) into
// `descriptors`, their number in `count`; `truncated` set when some were lost (MSG_CTRUNC,
// or more than `capacity`, which are closed).
long penha_receive_descriptors(int fd, void *buffer, size_t length, int *descriptors, int capacity, int *count,
                               int *truncated);
// The peer's process and user (SO_PEERCRED): 0, or -1 with errno.
int penha_peer_credentials(int fd, int *pid, unsigned int *uid);

#endif
