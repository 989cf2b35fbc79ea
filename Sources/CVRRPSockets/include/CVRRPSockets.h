// What Swift cannot reach in Glibc for VRRP's sockets: packet sockets (sockaddr_ll), the
// ancillary data of recvmsg, whose CMSG_* accessors are macros, ppoll (a GNU extension) and
// netlink's sockaddr_nl.
#ifndef CVRRP_SOCKETS_H
#define CVRRP_SOCKETS_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/// Receives one datagram. For IPv6 raw sockets with IPV6_RECVHOPLIMIT and IPV6_RECVPKTINFO
/// set, also returns the hop limit (-1 if absent) and the destination address (16 bytes,
/// zero if absent). Returns the byte count, or -1 with errno set.
ssize_t cvrrp_receive(int fd, void *buffer, size_t length, struct sockaddr_storage *source,
                      int *hop_limit, uint8_t destination[16]);

/// Sends one Ethernet frame out of an interface on a packet socket.
ssize_t cvrrp_send_frame(int fd, int interface_index, const void *frame, size_t length,
                         const uint8_t destination_mac[6], uint16_t ethertype);

/// An AF_PACKET raw socket for ARP frames, or -1 with errno set.
int cvrrp_open_arp_socket(void);

/// Waits for the descriptors at most `nanoseconds` (ppoll: poll's milliseconds would round a
/// 10 ms advert timer by up to a tenth). Returns as poll does.
int cvrrp_wait(struct pollfd *descriptors, nfds_t count, uint64_t nanoseconds);

/// A non-blocking rtnetlink socket subscribed to link changes (RTMGRP_LINK): readable when an
/// interface goes up or down, so that nobody has to ask. -1 with errno set.
int cvrrp_open_link_monitor(void);

#endif
