// libnl-route-3: adding and removing the virtual addresses, and the routes penha announces
// by BGP, through rtnetlink.
#include <netlink/netlink.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>
#include <netlink/route/nexthop.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
