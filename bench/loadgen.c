/* loadgen: a small open-loop HTTP/1.1 load generator (wrk2-style constant rate).
 *
 * Request i is due at t0 + i/rate whatever happened before it; it goes out on a free
 * keep-alive connection, or waits in a queue if all are busy. Its latency is measured
 * from the time it was due, not from when it could be sent, so a stalled server is
 * charged for every request it held up (no coordinated omission). The time from the
 * actual send is reported too ("service").
 *
 * One thread, epoll, plain sockets: ~10-20 us of CPU per request, which matters on a
 * 2-core machine shared with the server under test.
 *
 *   loadgen -H 127.0.0.1 -p PORT -r RATE -c CONNS -d SECONDS [-m METHOD]
 *           [-h 'Header: value']... [-b BODY] [-P PATHS_FILE | path...]
 *           [-o LATENCIES_FILE]
 *
 * Paths are used round robin. SIGINT/SIGTERM stop the schedule early; requests in
 * flight are awaited (up to 5 s). Prints one JSON object on stdout. Only responses with
 * Content-Length are understood (what uvicorn sends for JSON); chunked is an error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS 16
#define BUF 65536

typedef struct {
    int fd;
    int busy;            /* a request is in flight */
    int64_t due_us;      /* when it was due (schedule) */
    int64_t sent_us;     /* when it was written */
    char *rbuf;
    size_t rlen;
    const char *req;     /* request bytes still to write */
    size_t req_left;
} conn_t;

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct sockaddr_in addr;
static char **requests;  /* prebuilt request bytes per path */
static size_t *request_lens;
static int n_paths;
static int64_t *lat, *svc;
static size_t n_lat, cap_lat;
static long n_errors, n_non2xx, n_reconnects, n_sent;
static int64_t first_due, last_done;

static void record(int64_t due, int64_t sent, int64_t done, int ok) {
    if (!ok) n_non2xx++;
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 65536;
        lat = realloc(lat, cap_lat * sizeof *lat);
        svc = realloc(svc, cap_lat * sizeof *svc);
        if (!lat || !svc) { perror("realloc"); exit(2); }
    }
    lat[n_lat] = done - due;
    svc[n_lat] = done - sent;
    n_lat++;
    last_done = done;
}

static int open_conn(int ep, conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { perror("socket"); exit(2); }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        perror("connect");
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->rlen = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

static void try_write(conn_t *c) {
    while (c->req_left) {
        ssize_t w = write(c->fd, c->req, c->req_left);
        if (w < 0) {
            if (errno == EAGAIN || errno == ENOTCONN) return; /* EPOLLOUT will come */
            return; /* error surfaces on read side */
        }
        c->req += w;
        c->req_left -= (size_t)w;
    }
}

static void send_on(conn_t *c, int64_t due) {
    int k = (int)(n_sent % n_paths);
    c->busy = 1;
    c->due_us = due;
    c->sent_us = now_us();
    c->req = requests[k];
    c->req_left = request_lens[k];
    n_sent++;
    try_write(c);
}

/* 1: a full response was parsed and consumed; 0: need more; -1: broken */
static int parse_response(conn_t *c, int *status) {
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) return c->rlen >= BUF ? -1 : 0;
    size_t head = (size_t)(end - c->rbuf) + 4;
    if (c->rlen < 12 || strncmp(c->rbuf, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(c->rbuf + 9);
    long clen = -1;
    char *p = c->rbuf;
    while (p < end) {
        char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
        if (!eol) break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            clen = strtol(p + 15, NULL, 10);
        if ((size_t)(eol - p) > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0)
            return -1;
        p = eol + 2;
    }
    if (clen < 0) clen = 0;
    if (head + (size_t)clen > BUF) return -1;
    if (c->rlen < head + (size_t)clen) return 0;
    size_t used = head + (size_t)clen;
    memmove(c->rbuf, c->rbuf + used, c->rlen - used);
    c->rlen -= used;
    return 1;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct(int64_t *v, size_t n, double q) {
    if (!n) return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i] / 1000.0;
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen -H host -p port -r rate -c conns -d seconds [-m METHOD] "
                    "[-h header]... [-b body] [-P paths_file | path...] [-o latencies]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *method = "GET", *body = NULL, *paths_file = NULL,
               *out_file = NULL;
    const char *headers[MAX_HEADERS];
    int n_headers = 0, port = 0, conns = 10;
    double rate = 100, duration = 10;
    int opt;
    while ((opt = getopt(argc, argv, "H:p:r:c:d:m:h:b:P:o:")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'c': conns = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'm': method = optarg; break;
        case 'h': if (n_headers < MAX_HEADERS) headers[n_headers++] = optarg; break;
        case 'b': body = optarg; break;
        case 'P': paths_file = optarg; break;
        case 'o': out_file = optarg; break;
        default: usage();
        }
    }
    if (!port || rate <= 0 || conns <= 0) usage();
    char **paths = NULL;
    if (paths_file) {
        FILE *f = fopen(paths_file, "r");
        if (!f) { perror(paths_file); return 2; }
        char line[4096];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!*line) continue;
            paths = realloc(paths, (size_t)(n_paths + 1) * sizeof *paths);
            paths[n_paths++] = strdup(line);
        }
        fclose(f);
    } else {
        for (int i = optind; i < argc; i++) {
            paths = realloc(paths, (size_t)(n_paths + 1) * sizeof *paths);
            paths[n_paths++] = argv[i];
        }
    }
    if (!n_paths) usage();
    requests = calloc((size_t)n_paths, sizeof *requests);
    request_lens = calloc((size_t)n_paths, sizeof *request_lens);
    for (int i = 0; i < n_paths; i++) {
        char *r = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&r, &len);
        fprintf(m, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n", method, paths[i], host, port);
        for (int h = 0; h < n_headers; h++) fprintf(m, "%s\r\n", headers[h]);
        if (body) fprintf(m, "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
        else if (strcmp(method, "GET") != 0) fprintf(m, "Content-Length: 0\r\n\r\n");
        else fprintf(m, "\r\n");
        fclose(m);
        requests[i] = r;
        request_lens[i] = len;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) { fprintf(stderr, "bad host\n"); return 2; }

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *cs = calloc((size_t)conns, sizeof *cs);
    for (int i = 0; i < conns; i++) {
        cs[i].rbuf = malloc(BUF);
        if (open_conn(ep, &cs[i]) < 0) return 2;
    }
    /* backlog of due times that found no free connection (a ring) */
    size_t qcap = (size_t)(rate * duration) + 16, qh = 0, qt = 0;
    int64_t *queue = malloc(qcap * sizeof *queue);
    int64_t interval_ns = (int64_t)(1e9 / rate);
    int64_t total = (int64_t)(rate * duration);
    usleep(100000); /* let the connections open */
    int64_t t0 = now_us() + 1000;
    first_due = t0;
    int64_t scheduled = 0; /* requests whose due time has come */
    int64_t stop_at = 0;
    struct epoll_event evs[256];
    int free_hint = 0;

    for (;;) {
        int64_t now = now_us();
        if (!stop_flag) {
            while (scheduled < total) {
                int64_t due = t0 + scheduled * interval_ns / 1000;
                if (due > now) break;
                queue[qt++ % qcap] = due;
                scheduled++;
            }
        }
        /* hand queued requests to free connections, oldest first */
        for (int k = 0; k < conns && qh != qt; k++) {
            conn_t *c = &cs[(free_hint + k) % conns];
            if (!c->busy && c->fd >= 0) {
                send_on(c, queue[qh++ % qcap]);
                free_hint = (int)((c - cs) + 1) % conns;
            }
        }
        int outstanding = 0;
        for (int i = 0; i < conns; i++) outstanding += cs[i].busy;
        int done_scheduling = stop_flag || scheduled >= total;
        if (done_scheduling && (qh == qt || stop_flag) && !outstanding) break;
        if (done_scheduling && !stop_at) stop_at = now + 5000000;
        if (stop_at && now > stop_at) break;
        int64_t wait_us = 50000;
        if (!done_scheduling) {
            int64_t next_due = t0 + scheduled * interval_ns / 1000;
            wait_us = next_due - now;
            if (wait_us < 0) wait_us = 0;
            if (wait_us > 50000) wait_us = 50000;
        }
        /* microsecond timeout: epoll_wait's milliseconds would send up to 1 ms late */
        struct timespec timeout = {.tv_sec = 0, .tv_nsec = wait_us * 1000};
        int n = epoll_pwait2(ep, evs, 256, &timeout, NULL);
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) try_write(c);
            int broken = (evs[i].events & (EPOLLERR | EPOLLHUP)) != 0;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP)) {
                for (;;) {
                    ssize_t r = read(c->fd, c->rbuf + c->rlen, BUF - c->rlen);
                    if (r > 0) {
                        c->rlen += (size_t)r;
                        int status, got;
                        while ((got = parse_response(c, &status)) == 1) {
                            if (c->busy) {
                                int64_t t = now_us();
                                record(c->due_us, c->sent_us, t, status >= 200 && status < 300);
                                c->busy = 0;
                            }
                        }
                        if (got < 0) { broken = 1; break; }
                        if (c->rlen == BUF) { broken = 1; break; }
                    } else if (r == 0) {
                        broken = 1;
                        break;
                    } else {
                        if (errno != EAGAIN) broken = 1;
                        break;
                    }
                }
            }
            if (broken) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                if (c->busy) { n_errors++; c->busy = 0; }
                n_reconnects++;
                open_conn(ep, c);
            }
        }
    }
    int64_t end = now_us();
    long unsent = (long)(qt - qh);
    long in_flight = 0;
    for (int i = 0; i < conns; i++) in_flight += cs[i].busy;

    if (out_file) {
        FILE *f = fopen(out_file, "w");
        if (f) {
            for (size_t i = 0; i < n_lat; i++) fprintf(f, "%lld %lld\n", (long long)lat[i], (long long)svc[i]);
            fclose(f);
        }
    }
    qsort(lat, n_lat, sizeof *lat, cmp64);
    qsort(svc, n_lat, sizeof *svc, cmp64);
    double span = (double)((last_done > first_due ? last_done : end) - first_due) / 1e6;
    printf("{\"target_rate\": %.1f, \"connections\": %d, \"scheduled\": %lld, \"completed\": %zu, "
           "\"errors\": %ld, \"non_2xx\": %ld, \"reconnects\": %ld, \"unsent\": %ld, "
           "\"in_flight_at_end\": %ld, \"seconds\": %.3f, \"achieved_rate\": %.1f, "
           "\"latency_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}, "
           "\"service_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}}\n",
           rate, conns, (long long)scheduled, n_lat, n_errors, n_non2xx, n_reconnects,
           unsent, in_flight, span, span > 0 ? (double)n_lat / span : 0,
           pct(lat, n_lat, 0.5), pct(lat, n_lat, 0.9), pct(lat, n_lat, 0.99), pct(lat, n_lat, 0.999),
           n_lat ? lat[n_lat - 1] / 1000.0 : 0,
           pct(svc, n_lat, 0.5), pct(svc, n_lat, 0.9), pct(svc, n_lat, 0.99), pct(svc, n_lat, 0.999),
           n_lat ? svc[n_lat - 1] / 1000.0 : 0);
    return 0;
}
