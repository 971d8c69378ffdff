/*
 * gen: traffic generator and counting sink for bench/run.sh. Every mode is bounded by SECS and
 * also stops on SIGTERM/SIGINT; each prints one "key=value" summary line.
 *
 *   gen eth  IFACE SIZE SECS
 *       AF_PACKET flood of SIZE-byte Ethernet frames (no FCS) out of IFACE, sendmmsg in batches
 *       of 64, PACKET_QDISC_BYPASS. Frames: 02:b0:00:00:00:01 -> 02:b0:00:00:00:02, IPv4/UDP
 *       198.51.100.1 -> 198.51.100.2 (documentation addresses), zero padded.
 *   gen l2tp SRC_IP SRC_PORT DST_IP DST_PORT SESSION SIZE SECS
 *       UDP sendmmsg flood of prebuilt L2TPv3 data messages (12-byte header: 0x0003 0x0000,
 *       SESSION, default sublayer 0) each carrying the same SIZE-byte frame as `eth`.
 *   gen sink LOCAL_IP PORT SESSION SECS
 *       recvmmsg counter: datagrams with a valid L2TPv3 header for SESSION vs anything else.
 *   gen mesh SRC_IP SRC_PORT DST_IP DPORT0 TUNNELS SPT SIZE PPS SECS ROUNDS
 *       Paced (PPS, 0 = flood) L2TPv3/UDP from one socket to TUNNELS tunnels (destination port
 *       DPORT0 + t) of SPT sessions each, session ids t * SPT + k + 1, round robin over all
 *       sessions; stops after SECS or after ROUNDS rounds (0 = no limit).
 *   gen ethmesh PREFIX N SIZE PPS SECS
 *       Paced AF_PACKET frames (as `eth`) out of interfaces PREFIX0 .. PREFIX<N-1>, round robin.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define HDR 12
#define MAXF 2048

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }
static void die(const char *what) { perror(what); exit(1); }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const unsigned char SRC_MAC[6] = {0x02, 0xb0, 0, 0, 0, 0x01};
static const unsigned char DST_MAC[6] = {0x02, 0xb0, 0, 0, 0, 0x02};

static uint16_t csum(const unsigned char *p, int n) {
  uint32_t s = 0;
  for (int i = 0; i + 1 < n; i += 2) s += (uint32_t)p[i] << 8 | p[i + 1];
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

/* A SIZE-byte Ethernet/IPv4/UDP frame (SIZE >= 42). */
static void build_frame(unsigned char *f, int size) {
  memset(f, 0, size);
  memcpy(f, DST_MAC, 6);
  memcpy(f + 6, SRC_MAC, 6);
  f[12] = 0x08; f[13] = 0x00;
  unsigned char *ip = f + 14;
  int iplen = size - 14;
  ip[0] = 0x45; ip[2] = iplen >> 8; ip[3] = iplen & 0xff; ip[8] = 64; ip[9] = 17;
  ip[12] = 198; ip[13] = 51; ip[14] = 100; ip[15] = 1;
  ip[16] = 198; ip[17] = 51; ip[18] = 100; ip[19] = 2;
  uint16_t c = csum(ip, 20);
  ip[10] = c >> 8; ip[11] = c & 0xff;
  unsigned char *udp = ip + 20;
  int ulen = iplen - 20;
  udp[0] = 0x23; udp[1] = 0x28; udp[2] = 0x23; udp[3] = 0x29; /* 9000 -> 9001 */
  udp[4] = ulen >> 8; udp[5] = ulen & 0xff;
}

/* The 12-byte L2TPv3 data header: 0x0003 0x0000, SESSION, default sublayer 0. */
static void l2tp_header(unsigned char *p, uint32_t session) {
  memset(p, 0, HDR);
  p[1] = 3;
  p[4] = session >> 24; p[5] = session >> 16; p[6] = session >> 8; p[7] = session;
}

/* A UDP socket bound to SRC:PORT with a 4 MiB send buffer. */
static int udp_sender(const char *src, const char *port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  int sz = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
  if (inet_pton(AF_INET, src, &a.sin_addr) != 1) die("address");
  int reuse = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  return fd;
}

/* Send messages m[0..count) round robin in batches, at most `pps` a second (0 = flood), until
 * `secs` pass or `rounds` full rounds are sent (0 = no limit). m[i].msg_hdr is ready to send. */
static int paced(int fd, struct mmsghdr *all, long count, double pps, double secs, long rounds) {
  unsigned long long sent = 0, errs = 0;
  long next = 0;
  /* Fewer messages than a batch (one session): repeat them, so one sendmmsg still sends a batch. */
  long total = count;
  if (count < BATCH) {
    static struct mmsghdr rep[BATCH];
    for (int i = 0; i < BATCH; i++) rep[i] = all[i % count];
    all = rep;
    total = BATCH;
  }
  double t0 = now(), end = t0 + secs, t = t0;
  while (!stop && t < end && (rounds == 0 || sent < (unsigned long long)rounds * count)) {
    long due = pps > 0 ? (long)((t - t0) * pps) - (long)sent : BATCH;
    if (due <= 0) {
      struct timespec ts = {0, 200000};
      nanosleep(&ts, NULL);
      t = now();
      continue;
    }
    int want = due < BATCH ? (int)due : BATCH;
    if (want > total - next) want = (int)(total - next);
    if (rounds && sent + want > (unsigned long long)rounds * count) want = (int)((unsigned long long)rounds * count - sent);
    int n = sendmmsg(fd, all + next, want, 0);
    if (n > 0) { sent += n; next = (next + n) % total; }
    else { errs++; struct timespec ts = {0, 100000}; nanosleep(&ts, NULL); }
    t = now();
  }
  double dt = now() - t0;
  printf("sent=%llu secs=%.3f pps=%.0f errors=%llu\n", sent, dt, dt > 0 ? sent / dt : 0, errs);
  return 0;
}

static int flood(int fd, struct mmsghdr *m, double secs) {
  unsigned long long sent = 0, errs = 0;
  double t0 = now(), end = t0 + secs, t = t0;
  while (!stop && t < end) {
    int n = sendmmsg(fd, m, BATCH, 0);
    if (n > 0) sent += n;
    else errs++;
    if ((sent & 0x3ff) < BATCH) t = now();
  }
  double dt = now() - t0;
  printf("sent=%llu secs=%.3f pps=%.0f errors=%llu\n", sent, dt, sent / dt, errs);
  return 0;
}

int main(int argc, char **argv) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  setvbuf(stdout, NULL, _IOLBF, 0);
  static unsigned char pkt[MAXF], rx[BATCH][MAXF];
  static struct mmsghdr m[BATCH];
  static struct iovec iov[BATCH];
  const char *mode = argc > 1 ? argv[1] : "";

  if (!strcmp(mode, "eth") && argc == 5) {
    int size = atoi(argv[3]);
    if (size < 60 || size > MAXF) { fprintf(stderr, "SIZE 60..%d\n", MAXF); return 2; }
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) die("socket AF_PACKET");
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(argv[2])};
    if (!ll.sll_ifindex) die("if_nametoindex");
    if (bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) die("bind AF_PACKET");
    build_frame(pkt, size);
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){pkt, (size_t)size};
      m[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    return flood(fd, m, atof(argv[4]));
  }

  if (!strcmp(mode, "l2tp") && argc == 9) {
    int size = atoi(argv[7]);
    if (size < 60 || size + HDR > MAXF) { fprintf(stderr, "SIZE 60..%d\n", MAXF - HDR); return 2; }
    uint32_t session = (uint32_t)strtoul(argv[6], NULL, 0);
    int fd = udp_sender(argv[2], argv[3]);
    struct sockaddr_in r = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[5]))};
    if (inet_pton(AF_INET, argv[4], &r.sin_addr) != 1) die("address");
    if (connect(fd, (struct sockaddr *)&r, sizeof r) < 0) die("connect");
    l2tp_header(pkt, session);
    build_frame(pkt + HDR, size);
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){pkt, (size_t)size + HDR};
      m[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    return flood(fd, m, atof(argv[8]));
  }

  if (!strcmp(mode, "sink") && argc == 6) {
    uint32_t session = (uint32_t)strtoul(argv[4], NULL, 0);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    int sz = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) < 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    struct timeval tv = {0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) die("address");
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){rx[i], MAXF};
      m[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    unsigned long long ok = 0, bad = 0;
    double end = now() + atof(argv[5]);
    while (!stop && now() < end) {
      int n = recvmmsg(fd, m, BATCH, MSG_WAITFORONE, NULL);
      for (int i = 0; i < n; i++) {
        unsigned char *p = rx[i];
        uint32_t s = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
        if (m[i].msg_len >= HDR + 14 && p[0] == 0 && (p[1] & 0x0f) == 3 && s == session &&
            !memcmp(p + HDR + 6, SRC_MAC, 6)) ok++;
        else bad++;
      }
    }
    printf("valid=%llu invalid=%llu\n", ok, bad);
    return 0;
  }

  if (!strcmp(mode, "mesh") && argc == 12) {
    long tunnels = atol(argv[6]), spt = atol(argv[7]);
    int size = atoi(argv[8]);
    if (size < 60 || size + HDR > MAXF || tunnels < 1 || spt < 1) { fprintf(stderr, "mesh: bad arguments\n"); return 2; }
    long count = tunnels * spt;
    int fd = udp_sender(argv[2], argv[3]);
    struct sockaddr_in r = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, argv[4], &r.sin_addr) != 1) die("address");
    unsigned char *pkts = calloc(count, HDR + size);
    struct sockaddr_in *dst = calloc(tunnels, sizeof *dst);
    struct mmsghdr *all = calloc(count, sizeof *all);
    struct iovec *iovs = calloc(count, sizeof *iovs);
    if (!pkts || !dst || !all || !iovs) die("calloc");
    int dport0 = atoi(argv[5]);
    for (long t = 0; t < tunnels; t++) { dst[t] = r; dst[t].sin_port = htons(dport0 + t); }
    /* Sessions interleaved across tunnels (t fastest), as independent peers' traffic would be. */
    for (long i = 0; i < count; i++) {
      long t = i % tunnels, k = i / tunnels;
      uint32_t session = (uint32_t)(t * spt + k + 1);
      unsigned char *p = pkts + i * (HDR + size);
      l2tp_header(p, session);
      build_frame(p + HDR, size);
      iovs[i] = (struct iovec){p, (size_t)size + HDR};
      all[i].msg_hdr = (struct msghdr){.msg_name = &dst[t], .msg_namelen = sizeof dst[t], .msg_iov = &iovs[i], .msg_iovlen = 1};
    }
    return paced(fd, all, count, atof(argv[9]), atof(argv[10]), atol(argv[11]));
  }

  if (!strcmp(mode, "ethmesh") && argc == 7) {
    long count = atol(argv[3]);
    int size = atoi(argv[4]);
    if (size < 60 || size > MAXF || count < 1) { fprintf(stderr, "ethmesh: bad arguments\n"); return 2; }
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) die("socket AF_PACKET");
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    build_frame(pkt, size);
    struct sockaddr_ll *ll = calloc(count, sizeof *ll);
    struct mmsghdr *all = calloc(count, sizeof *all);
    struct iovec *iovs = calloc(count, sizeof *iovs);
    if (!ll || !all || !iovs) die("calloc");
    for (long i = 0; i < count; i++) {
      char name[64];
      snprintf(name, sizeof name, "%s%ld", argv[2], i);
      if (strlen(name) >= IF_NAMESIZE) { fprintf(stderr, "interface name %s too long\n", name); return 2; }
      ll[i] = (struct sockaddr_ll){.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(name), .sll_halen = 6};
      if (!ll[i].sll_ifindex) { fprintf(stderr, "no interface %s\n", name); return 1; }
      memcpy(ll[i].sll_addr, DST_MAC, 6);
      iovs[i] = (struct iovec){pkt, (size_t)size};
      all[i].msg_hdr = (struct msghdr){.msg_name = &ll[i], .msg_namelen = sizeof ll[i], .msg_iov = &iovs[i], .msg_iovlen = 1};
    }
    return paced(fd, all, count, atof(argv[5]), atof(argv[6]), 0);
  }

  fprintf(stderr, "usage: gen eth IFACE SIZE SECS | gen l2tp SRC_IP SRC_PORT DST_IP DST_PORT SESSION SIZE SECS |\n"
                  "       gen sink LOCAL_IP PORT SESSION SECS |\n"
                  "       gen mesh SRC_IP SRC_PORT DST_IP DPORT0 TUNNELS SPT SIZE PPS SECS ROUNDS |\n"
                  "       gen ethmesh PREFIX N SIZE PPS SECS\n");
  return 2;
}
