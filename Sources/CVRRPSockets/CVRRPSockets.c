#define _GNU_SOURCE
#include "CVRRPSockets.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

ssize_t cvrrp_receive(int fd, void *buffer, size_t length, struct sockaddr_storage *source,
                      int *hop_limit, uint8_t destination[16]) {
    char control[256];
    struct iovec vector = { .iov_base = buffer, .iov_len = length };
    struct msghdr message = {
        .msg_name = source, .msg_namelen = sizeof(*source),
        .msg_iov = &vector, .msg_iovlen = 1,
        .msg_control = control, .msg_controllen = sizeof(control),
    };
    *hop_limit = -1;
    memset(destination, 0, 16);
    ssize_t count = recvmsg(fd, &message, MSG_DONTWAIT);
    if (count < 0) return count;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != IPPROTO_IPV6) continue;
        if (header->cmsg_type == IPV6_HOPLIMIT && header->cmsg_len >= CMSG_LEN(sizeof(int))) {
            memcpy(hop_limit, CMSG_DATA(header), sizeof(int));
        } else if (header->cmsg_type == IPV6_PKTINFO && header->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(header), sizeof(info));
            memcpy(destination, &info.ipi6_addr, 16);
        }
    }
    return count;
}

ssize_t cvrrp_send_frame(int fd, int interface_index, const void *frame, size_t length,
                         const uint8_t destination_mac[6], uint16_t ethertype) {
    struct sockaddr_ll address;
    memset(&address, 0, sizeof(address));
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(ethertype);
    address.sll_ifindex = interface_index;
    address.sll_halen = 6;
    memcpy(address.sll_addr, destination_mac, 6);
    return sendto(fd, frame, length, 0, (struct sockaddr *)&address, sizeof(address));
}

int cvrrp_open_arp_socket(void) {
    return socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ARP));
}

int cvrrp_wait(struct pollfd *descriptors, nfds_t count, uint64_t nanoseconds) {
    struct timespec timeout = { .tv_sec = (time_t)(nanoseconds / 1000000000u), .tv_nsec = (long)(nanoseconds % 1000000000u) };
    return ppoll(descriptors, count, &timeout, NULL);
}

int cvrrp_open_link_monitor(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return -1;
    struct sockaddr_nl address = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK };
    if (bind(fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
        int code = errno;
        close(fd);
        errno = code;
        return -1;
    }
    return fd;
}
