// Most of the shim is in the header; what needs _GNU_SOURCE (struct ucred, MSG_CMSG_CLOEXEC)
// is here, where the define comes before any include.
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include "CEngine.h"

long penha_send_descriptors(int fd, const void *buffer, size_t length, const int *descriptors, int count) {
    if (count < 0 || count > PENHA_MAX_DESCRIPTORS) {
        errno = EINVAL;
        return -1;
    }
    char control[CMSG_SPACE(sizeof(int) * PENHA_MAX_DESCRIPTORS)];
    struct iovec part = { .iov_base = (void *)buffer, .iov_len = length };
    struct msghdr message = { .msg_iov = &part, .msg_iovlen = 1 };
    if (count > 0) {
        memset(control, 0, sizeof(control));
        message.msg_control = control;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * count);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * count);
        memcpy(CMSG_DATA(header), descriptors, sizeof(int) * count);
    }
    return sendmsg(fd, &message, MSG_NOSIGNAL);
}

long penha_receive_descriptors(int fd, void *buffer, size_t length, int *descriptors, int capacity, int *count,
                               int *truncated) {
    char control[CMSG_SPACE(sizeof(int) * PENHA_MAX_DESCRIPTORS)];
    struct iovec part = { .iov_base = buffer, .iov_len = length };
    struct msghdr message = { .msg_iov = &part, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
    *count = 0;
    *truncated = 0;
    long received = recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
    if (received < 0) return received;
    if (message.msg_flags & MSG_CTRUNC) *truncated = 1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        int carried = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *given = (int *)CMSG_DATA(header);
        for (int index = 0; index < carried; index++) {
            // More than the caller has room for: closed here, and the frame refused.
            if (*count < capacity) {
                descriptors[(*count)++] = given[index];
            } else {
                close(given[index]);
                *truncated = 1;
            }
        }
    }
    return received;
}

int penha_peer_credentials(int fd, int *pid, unsigned int *uid) {
    struct ucred credentials;
    socklen_t size = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) return -1;
    *pid = credentials.pid;
    *uid = credentials.uid;
    return 0;
}
