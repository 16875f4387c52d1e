/* The bench's lean receiver: many listening websocket clients in one epoll loop, in C.

   The Python receivers cost ~9 us of CPU per delivery; 100 msg/s x 1,000 listeners then needs
   ~90 % of the one core the load generator has on a 2-core machine, and a generator that falls
   behind makes every server look cheaper than it is. This program does the same job (connect,
   join, count and check every message, measure its latency) for well under a microsecond of
   user time per delivery, so the generator is no longer what limits a run.

   It is driven by bench/lean/__init__.py (inside a `python -m bench.worker` process, which keeps
   the senders), line by line on stdin:

     kind product|socketio|echo
     target <host> <port>
     limits <connect concurrency> <connect timeout s> <join timeout s>
     client <request path> <token|-> <name|-> <source address|-> <room> ...
     start                               (connect and join everyone, then print `ready`)
     go <wall-clock start>               (ticks each second from then on)
     expect <drain s> <room> <final> ... (wait until every member has its rooms' messages)
     quit                                (or end of input)

   and answers with one JSON object per line on stdout: `ready`, one `tick` a second, `done`.
   Histograms are the harness's own (bench/stats.py: 1 % log buckets of microseconds), written
   in its wire form, so they merge exactly with the Python workers'.

   What it speaks: plain ws:// (no TLS), the HTTP upgrade (a token goes in an Authorization
   header), masked client frames, unmasked server frames (masked ones are read too), fragments,
   ping -> pong, close. Frames are scanned, not parsed: a server frame's keys are found with
   memmem on `"key":` (a string value cannot contain that sequence unescaped), which is enough
   for the fields the bench reads: t, room, seq, lastSeq, code and the timestamp that starts a
   bench message's body. Several frames may arrive in one read and a frame across several. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { K_PRODUCT, K_SOCKETIO, K_ECHO };
enum { ST_WAITING, ST_CONNECT, ST_UPGRADE, ST_SIO_OPEN, ST_JOIN, ST_LIVE, ST_FAILED, ST_CLOSED };

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("receiver: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory");
    return q;
}

static char *xstrndup(const char *s, size_t n) {
    char *d = xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --- histograms: bench/stats.py's buckets, bucket i = floor(ln(us) * SCALE) ----------- */

static double SCALE;
static int NBUCKETS;

typedef struct {
    uint32_t *counts;
    long n;
    double total, max, min;
} hist_t;

static void hist_init(hist_t *h) {
    h->counts = xrealloc(NULL, NBUCKETS * sizeof(uint32_t));
    memset(h->counts, 0, NBUCKETS * sizeof(uint32_t));
    h->n = 0;
    h->total = h->max = 0;
    h->min = INFINITY;
}

static void hist_reset(hist_t *h) {
    if (h->n) memset(h->counts, 0, NBUCKETS * sizeof(uint32_t));
    h->n = 0;
    h->total = h->max = 0;
    h->min = INFINITY;
}

static void hist_record(hist_t *h, double seconds) {
    double us = seconds * 1e6;
    int i = 0;
    if (us >= 1.0) {
        i = (int)(log(us) * SCALE);
        if (i >= NBUCKETS) i = NBUCKETS - 1;
    }
    h->counts[i]++;
    h->n++;
    h->total += seconds;
    if (seconds > h->max) h->max = seconds;
    if (seconds < h->min) h->min = seconds;
}

/* HistogramWire, array-like: [[[bucket, count], ...], n, total, max, min] */
static void hist_print(FILE *f, const hist_t *h) {
    fputs("[[", f);
    int first = 1;
    for (int i = 0; i < NBUCKETS && h->n; i++) {
        if (!h->counts[i]) continue;
        fprintf(f, "%s[%d,%u]", first ? "" : ",", i, h->counts[i]);
        first = 0;
    }
    fprintf(f, "],%ld,%.9f,%.9f,%.9f]", h->n, h->total, h->max, h->n ? h->min : 0.0);
}

/* --- error names, counted ------------------------------------------------------------- */

typedef struct {
    char *name;
    long count;
} tally_t;
static tally_t *errors;
static int nerrors;

static void count_error(const char *name) {
    for (int i = 0; i < nerrors; i++)
        if (!strcmp(errors[i].name, name)) {
            errors[i].count++;
            return;
        }
    errors = xrealloc(errors, (nerrors + 1) * sizeof *errors);
    errors[nerrors].name = xstrndup(name, strlen(name));
    errors[nerrors++].count = 1;
}

static void errors_print(FILE *f) {
    fputc('{', f);
    for (int i = 0; i < nerrors; i++) {
        fputs(i ? ",\"" : "\"", f);
        for (const char *s = errors[i].name; *s; s++)
            if (*s != '"' && *s != '\\' && (unsigned char)*s >= 0x20) fputc(*s, f);
        fprintf(f, "\":%ld", errors[i].count);
    }
    fputc('}', f);
}

/* --- rooms and clients ------------------------------------------------------------------ */

static char **room_names;
static size_t *room_lens;
static long *room_finals;
static int nrooms;

static int room_index(const char *name, size_t len) {
    for (int i = 0; i < nrooms; i++)
        if (room_lens[i] == len && !memcmp(room_names[i], name, len)) return i;
    room_names = xrealloc(room_names, (nrooms + 1) * sizeof *room_names);
    room_lens = xrealloc(room_lens, (nrooms + 1) * sizeof *room_lens);
    room_finals = xrealloc(room_finals, (nrooms + 1) * sizeof *room_finals);
    room_names[nrooms] = xstrndup(name, len);
    room_lens[nrooms] = len;
    room_finals[nrooms] = 0;
    return nrooms++;
}

typedef struct {
    long sender, last;
} sender_t;

typedef struct {
    int room;
    int joined;
    long base, last, count;
    sender_t *senders; /* servers without sequences (echo): each sender's last number */
    int nsenders;
} croom_t;

typedef struct {
    int fd, state, kind;
    char *path, *token, *name, *source;
    croom_t *rooms;
    int nrooms, joining;
    long sio_id;
    double t0; /* monotonic: when the current connect or join began */
    char *in;  /* bytes of an incomplete frame (or of the HTTP answer), kept for the next read */
    size_t inlen, incap;
    char *out; /* bytes the kernel did not take yet */
    size_t outlen, outcap;
    char *frag; /* a fragmented message being put together */
    size_t fraglen;
    int fragging;
} conn_t;

static int kind = K_PRODUCT;
static char *host = "127.0.0.1";
static int port = 80;
static struct sockaddr_in target_addr;
static int concurrency = 64;
static double connect_timeout = 30, join_timeout = 30;

static conn_t *conns;
static int nconns;
static int epfd;

/* bring-up */
static int next_start, inflight, connected, failed, ready_sent;
static hist_t h_connect, h_join;
/* the run */
static hist_t h_sec;
static long sec_deliveries, duplicates, gaps, resyncs;
static int going, draining, done_sent;
static double go_at, drain_until;
static long second;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rand32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* --- output ----------------------------------------------------------------------------- */

static void emit_ready(void) {
    printf("{\"e\":\"ready\",\"connected\":%d,\"failed\":%d,\"connect\":", connected, failed);
    hist_print(stdout, &h_connect);
    fputs(",\"join\":", stdout);
    hist_print(stdout, &h_join);
    fputs(",\"errors\":", stdout);
    errors_print(stdout);
    fputs("}\n", stdout);
    fflush(stdout);
    ready_sent = 1;
    nerrors = 0; /* `done` reports the errors after these */
}

static void emit_tick(void) {
    printf("{\"e\":\"tick\",\"second\":%ld,\"deliveries\":%ld,\"latency\":", second,
           sec_deliveries);
    hist_print(stdout, &h_sec);
    fputs("}\n", stdout);
    fflush(stdout);
    hist_reset(&h_sec);
    sec_deliveries = 0;
    second++;
}

/* --- writing ---------------------------------------------------------------------------- */

static void want_out(conn_t *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET | (on ? EPOLLOUT : 0),
                             .data.u32 = c - conns};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_write(conn_t *c, const char *p, size_t n) {
    if (c->fd < 0) return;
    if (!c->outlen) {
        ssize_t w = write(c->fd, p, n);
        if (w == (ssize_t)n) return;
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) return; /* the read side will see it */
            w = 0;
        }
        p += w;
        n -= w;
        want_out(c, 1);
    }
    if (c->outlen + n > c->outcap) {
        c->outcap = (c->outlen + n) * 2;
        c->out = xrealloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void flush_out(conn_t *c) {
    if (!c->outlen) return;
    ssize_t w = write(c->fd, c->out, c->outlen);
    if (w < 0) return;
    memmove(c->out, c->out + w, c->outlen - w);
    c->outlen -= w;
    if (!c->outlen) want_out(c, 0);
}

/* a client frame: always masked (RFC 6455) */
static void ws_send(conn_t *c, int opcode, const char *p, size_t n) {
    char stackbuf[1024];
    size_t total = n + 14;
    char *buf = total <= sizeof stackbuf ? stackbuf : xrealloc(NULL, total);
    size_t h = 0;
    buf[h++] = (char)(0x80 | opcode);
    if (n < 126) {
        buf[h++] = (char)(0x80 | n);
    } else if (n < 65536) {
        buf[h++] = (char)(0x80 | 126);
        buf[h++] = (char)(n >> 8);
        buf[h++] = (char)n;
    } else {
        buf[h++] = (char)(0x80 | 127);
        for (int i = 7; i >= 0; i--) buf[h++] = (char)((uint64_t)n >> (8 * i));
    }
    uint32_t key = rand32();
    unsigned char k[4];
    memcpy(k, &key, 4);
    memcpy(buf + h, k, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) buf[h + i] = (char)(p[i] ^ k[i & 3]);
    conn_write(c, buf, h + n);
    if (buf != stackbuf) free(buf);
}

static void ws_text(conn_t *c, const char *fmt, ...) {
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof text) die("frame too long");
    ws_send(c, 0x1, text, n);
}

/* --- bring-up --------------------------------------------------------------------------- */

static void check_ready(void) {
    if (!ready_sent && connected + failed == nconns) {
        hist_reset(&h_sec);
        sec_deliveries = 0;
        emit_ready();
    }
}

static void start_next(void);

static void conn_close(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

/* a client that did not get connected and joined */
static void fail(conn_t *c, const char *what) {
    count_error(what);
    conn_close(c);
    c->state = ST_FAILED;
    inflight--;
    failed++;
    start_next();
    check_ready();
}

static void lost(conn_t *c, const char *why) {
    if (c->state < ST_LIVE) {
        char name[96];
        snprintf(name, sizeof name, "%s:%s", c->state == ST_JOIN ? "join" : "connect", why);
        fail(c, name);
        return;
    }
    char name[96];
    snprintf(name, sizeof name, "closed:%s", why);
    count_error(name);
    conn_close(c);
    c->state = ST_CLOSED;
}

static const char *errno_name(int e) {
    switch (e) {
    case ECONNREFUSED: return "ConnectionRefusedError";
    case ECONNRESET: return "ConnectionResetError";
    case ETIMEDOUT: return "timeout";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EMFILE: return "EMFILE";
    default: return "OSError";
    }
}

static void live(conn_t *c) {
    c->state = ST_LIVE;
    inflight--;
    connected++;
    start_next();
    check_ready();
}

static void join_next(conn_t *c) {
    if (c->joining >= c->nrooms) {
        live(c);
        return;
    }
    croom_t *r = &c->rooms[c->joining];
    const char *room = room_names[r->room];
    c->t0 = mono_now();
    c->state = ST_JOIN;
    if (kind == K_PRODUCT) {
        ws_text(c, "{\"t\":\"join\",\"room\":\"%s\"}", room);
    } else if (kind == K_SOCKETIO) {
        ws_text(c, "42%ld[\"join\",{\"room\":\"%s\"}]", ++c->sio_id, room);
    } else { /* the echo peer: the room was given at connect */
        r->joined = 1;
        hist_record(&h_join, mono_now() - c->t0);
        c->joining++;
        join_next(c);
    }
}

static void joined(conn_t *c, const char *room, size_t len, long last_seq) {
    if (c->state != ST_JOIN) return;
    croom_t *r = &c->rooms[c->joining];
    if (room && (room_lens[r->room] != len || memcmp(room_names[r->room], room, len))) return;
    r->joined = 1;
    r->base = r->last = last_seq;
    hist_record(&h_join, mono_now() - c->t0);
    c->joining++;
    join_next(c);
}

static void upgraded(conn_t *c) {
    if (kind == K_SOCKETIO) {
        c->state = ST_SIO_OPEN; /* the Engine.IO open packet, then CONNECT, come first */
        return;
    }
    hist_record(&h_connect, mono_now() - c->t0);
    c->joining = 0;
    join_next(c);
}

static void start(conn_t *c) {
    c->t0 = mono_now();
    inflight++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->state = ST_CONNECT;
        fail(c, "connect:EMFILE");
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = ST_CONNECT;
    if (c->source) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, c->source, &src.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            fail(c, "connect:bind");
            return;
        }
    }
    /* edge-triggered: a socket the loop has read is not polled again until more arrives */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = c - conns};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&target_addr, sizeof target_addr) < 0 &&
        errno != EINPROGRESS) {
        char name[64];
        snprintf(name, sizeof name, "connect:%s", errno_name(errno));
        fail(c, name);
    }
}

static void start_next(void) {
    while (inflight < concurrency && next_start < nconns) start(&conns[next_start++]);
}

static void send_upgrade(conn_t *c) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[25];
    for (int i = 0; i < 21; i++) key[i] = b64[rand32() & 63];
    key[21] = 'Q';
    key[22] = key[23] = '=';
    key[24] = 0;
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     c->path, host, port, key, c->token ? "Authorization: Bearer " : "",
                     c->token ? c->token : "", c->token ? "\r\n" : "");
    if (n < 0 || n >= (int)sizeof req) die("upgrade request too long");
    c->state = ST_UPGRADE;
    want_out(c, 0);
    conn_write(c, req, n);
}

/* --- reading frames ------------------------------------------------------------------- */

/* the value after `"key":` (whitespace skipped), or NULL */
static const char *jval(const char *p, const char *end, const char *key, size_t klen) {
    const char *k = memmem(p, end - p, key, klen);
    if (!k) return NULL;
    k += klen;
    while (k < end && (*k == ' ' || *k == '\t')) k++;
    return k < end ? k : NULL;
}

/* a string value: its bytes (escapes left as they are) */
static const char *jstr(const char *p, const char *end, const char *key, size_t klen,
                        size_t *len) {
    const char *v = jval(p, end, key, klen);
    if (!v || *v != '"') return NULL;
    v++;
    const char *q = v;
    for (;;) { /* the closing quote: one not escaped by an odd number of backslashes */
        q = memchr(q, '"', end - q);
        if (!q) return NULL;
        const char *b = q;
        while (b > v && b[-1] == '\\') b--;
        if (!((q - b) & 1)) break;
        q++;
    }
    *len = q - v;
    return v;
}

static long jlong(const char *p, const char *end, const char *key, size_t klen, long dflt) {
    const char *v = jval(p, end, key, klen);
    if (!v || *v < '0' || *v > '9') return dflt;
    long x = 0;
    while (v < end && *v >= '0' && *v <= '9') x = x * 10 + (*v++ - '0');
    return x;
}

#define KEY(s) s, sizeof(s) - 1
#define IS(v, n, lit) ((n) == sizeof(lit) - 1 && !memcmp((v), lit, sizeof(lit) - 1))

static const char *parse_decimal(const char *p, const char *end, double *out) {
    long ip = 0;
    while (p < end && *p >= '0' && *p <= '9') ip = ip * 10 + (*p++ - '0');
    double x = (double)ip;
    if (p < end && *p == '.') {
        p++;
        long fp = 0, scale = 1;
        while (p < end && *p >= '0' && *p <= '9' && scale < 1000000000000L) {
            fp = fp * 10 + (*p++ - '0');
            scale *= 10;
        }
        while (p < end && *p >= '0' && *p <= '9') p++;
        x += (double)fp / (double)scale;
    }
    *out = x;
    return p;
}

/* one chat message: its latency, then the member's view of the room */
/* A numbered frame (a room's sequence, or a sender's own count): newer than `*last` counts,
 * a jump past the next is a gap, anything not newer a duplicate. */
static void count_in_order(long *last, long n, croom_t *r) {
    if (n > *last) {
        if (n != *last + 1) gaps++;
        *last = n;
        r->count++;
    } else {
        duplicates++;
    }
}

static void on_chat(conn_t *c, const char *p, const char *end) {
    size_t rlen = 0;
    const char *room = jstr(p, end, KEY("\"room\":"), &rlen);
    long seq = jlong(p, end, KEY("\"seq\":"), 0);
    size_t blen = 0;
    const char *body = jstr(p, end, KEY("\"body\":"), &blen);
    if (!room || !body) {
        count_error("receiver:unreadable_message");
        return;
    }
    const char *bend = body + blen;
    double sent_at;
    const char *q = parse_decimal(body, bend, &sent_at);
    hist_record(&h_sec, wall_now() - sent_at);
    sec_deliveries++;
    croom_t *r = NULL;
    for (int i = 0; i < c->nrooms; i++) {
        int k = c->rooms[i].room;
        if (room_lens[k] == rlen && !memcmp(room_names[k], room, rlen)) {
            r = &c->rooms[i];
            break;
        }
    }
    if (!r || !r->joined) return;
    if (seq) {
        count_in_order(&r->last, seq, r);
        return;
    }
    /* no sequence (echo): `<time>|<sender>|<n>|`, numbered per sender */
    long sender = 0, n = 0;
    if (q < bend && *q == '|') q++;
    while (q < bend && *q >= '0' && *q <= '9') sender = sender * 10 + (*q++ - '0');
    if (q < bend && *q == '|') q++;
    while (q < bend && *q >= '0' && *q <= '9') n = n * 10 + (*q++ - '0');
    sender_t *s = NULL;
    for (int i = 0; i < r->nsenders; i++)
        if (r->senders[i].sender == sender) s = &r->senders[i];
    if (!s) {
        r->senders = xrealloc(r->senders, (r->nsenders + 1) * sizeof *r->senders);
        s = &r->senders[r->nsenders++];
        s->sender = sender;
        s->last = 0;
    }
    count_in_order(&s->last, n, r);
}

static void on_error_frame(conn_t *c, const char *p, const char *end) {
    size_t clen = 0;
    const char *code = jstr(p, end, KEY("\"code\":"), &clen);
    char name[96];
    if (!code) code = "unknown", clen = 7;
    if (clen > 60) clen = 60;
    if (c->state == ST_JOIN) {
        snprintf(name, sizeof name, "join:%.*s", (int)clen, code);
        fail(c, name);
    } else {
        snprintf(name, sizeof name, "error:%.*s", (int)clen, code);
        count_error(name);
    }
}

static void on_product(conn_t *c, const char *p, size_t n) {
    const char *end = p + n;
    size_t tlen = 0;
    const char *t = jstr(p, end, KEY("\"t\":"), &tlen);
    if (!t) return;
    if (IS(t, tlen, "message")) {
        on_chat(c, t + tlen, end);
    } else if (IS(t, tlen, "joined")) {
        size_t rlen = 0;
        const char *room = jstr(p, end, KEY("\"room\":"), &rlen);
        joined(c, room, rlen, jlong(p, end, KEY("\"lastSeq\":"), 0));
    } else if (IS(t, tlen, "error")) {
        on_error_frame(c, p, end);
    } else if (IS(t, tlen, "resync")) {
        resyncs++;
    }
}

/* Engine.IO 4 / Socket.IO 5 text packets */
static void on_socketio(conn_t *c, const char *p, size_t n) {
    const char *end = p + n;
    if (n >= 2 && p[0] == '4' && p[1] == '2') {
        if (n > 12 && !memcmp(p + 2, "[\"message\",", 11)) on_chat(c, p + 13, end);
    } else if (n >= 2 && p[0] == '4' && p[1] == '3') {
        size_t tlen = 0;
        const char *t = jstr(p, end, KEY("\"t\":"), &tlen);
        if (t && IS(t, tlen, "error"))
            on_error_frame(c, p, end);
        else
            joined(c, NULL, 0, jlong(p, end, KEY("\"lastSeq\":"), 0));
    } else if (n == 1 && p[0] == '2') {
        ws_send(c, 0x1, "3", 1);
    } else if (n >= 2 && p[0] == '4' && p[1] == '0') {
        if (c->state == ST_SIO_OPEN) {
            hist_record(&h_connect, mono_now() - c->t0);
            c->joining = 0;
            join_next(c);
        }
    } else if (n >= 2 && p[0] == '4' && p[1] == '4') {
        if (c->state == ST_SIO_OPEN) fail(c, "connect:connect_error");
    } else if (n >= 1 && p[0] == '0') {
        ws_text(c, "40{\"user\":\"%s\"}", c->name ? c->name : "");
    }
}

static void on_message(conn_t *c, const char *p, size_t n) {
    if (kind == K_PRODUCT)
        on_product(c, p, n);
    else if (kind == K_SOCKETIO)
        on_socketio(c, p, n);
    else
        on_chat(c, p, p + n);
}

/* frames in buf[0:len]; returns how many bytes were used (the rest is an incomplete frame) */
static size_t on_frames(conn_t *c, char *buf, size_t len) {
    size_t pos = 0;
    while (len - pos >= 2) {
        unsigned char b0 = buf[pos], b1 = buf[pos + 1];
        uint64_t plen = b1 & 0x7F;
        size_t hdr = 2;
        if (plen == 126) {
            if (len - pos < 4) break;
            plen = ((unsigned char)buf[pos + 2] << 8) | (unsigned char)buf[pos + 3];
            hdr = 4;
        } else if (plen == 127) {
            if (len - pos < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | (unsigned char)buf[pos + 2 + i];
            hdr = 10;
        }
        if (b1 & 0x80) hdr += 4;
        if (len - pos < hdr + plen) break;
        char *p = buf + pos + hdr;
        if (b1 & 0x80) { /* a masked server frame: not allowed, but cheap to read */
            const char *k = p - 4;
            for (uint64_t i = 0; i < plen; i++) p[i] ^= k[i & 3];
        }
        pos += hdr + plen;
        int opcode = b0 & 0x0F, fin = b0 & 0x80;
        if (opcode == 0x1 || opcode == 0x2) {
            if (fin) {
                on_message(c, p, plen);
            } else {
                c->fragging = 1;
                c->frag = xrealloc(c->frag, plen);
                memcpy(c->frag, p, plen);
                c->fraglen = plen;
            }
        } else if (opcode == 0x0 && c->fragging) {
            c->frag = xrealloc(c->frag, c->fraglen + plen);
            memcpy(c->frag + c->fraglen, p, plen);
            c->fraglen += plen;
            if (fin) {
                c->fragging = 0;
                on_message(c, c->frag, c->fraglen);
            }
        } else if (opcode == 0x9) {
            ws_send(c, 0xA, p, plen);
        } else if (opcode == 0x8) {
            int code = plen >= 2 ? ((unsigned char)p[0] << 8) | (unsigned char)p[1] : 1005;
            ws_send(c, 0x8, p, plen >= 2 ? 2 : 0);
            char why[32];
            snprintf(why, sizeof why, "%d", code);
            lost(c, why);
            return len;
        }
        if (c->fd < 0) return len; /* failed while handling the frame */
    }
    return pos;
}

static char *rbuf;
static size_t rcap;

/* One read (edge-triggered epoll: a read that fills the buffer is followed by another, one
   that does not has emptied the socket, and new data will wake the loop again). Returns 1
   when the socket may have more. */
static int read_once(conn_t *c) {
    size_t have = c->inlen;
    if (rcap < have + 65536) {
        rcap = (have + 65536) * 2;
        rbuf = xrealloc(rbuf, rcap);
    }
    if (have) memcpy(rbuf, c->in, have);
    size_t room = rcap - have;
    ssize_t n = read(c->fd, rbuf + have, room);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n < 0 && errno == EINTR) return 1;
        lost(c, n == 0 ? "eof" : errno_name(errno));
        return 0;
    }
    int more = (size_t)n == room;
    have += n;
    c->inlen = 0;
    char *buf = rbuf;
    if (c->state == ST_UPGRADE) {
        char *eoh = memmem(buf, have, "\r\n\r\n", 4);
        if (!eoh) {
            if (have > 65536) {
                fail(c, "connect:bad_answer");
                return 0;
            }
            goto keep;
        }
        int status = 0;
        if (have < 12 || sscanf(buf, "HTTP/1.%*c %d", &status) != 1) status = 0;
        if (status != 101) {
            char name[32];
            snprintf(name, sizeof name, "connect:http_%d", status);
            fail(c, name);
            return 0;
        }
        size_t used = eoh + 4 - buf;
        buf += used;
        have -= used;
        upgraded(c);
    }
    size_t used = on_frames(c, buf, have);
    if (c->fd < 0) return 0;
    buf += used;
    have -= used;
keep:
    if (have) {
        if (have > c->incap) {
            c->incap = have * 2;
            c->in = xrealloc(c->in, c->incap);
        }
        memmove(c->in, buf, have);
        c->inlen = have;
    }
    return more;
}

static void on_readable(conn_t *c) {
    while (c->fd >= 0 && read_once(c)) {
    }
}

static void on_writable(conn_t *c) {
    if (c->state == ST_CONNECT) {
        int err = 0;
        socklen_t elen = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
        if (err) {
            char name[64];
            snprintf(name, sizeof name, "connect:%s", errno_name(err));
            fail(c, name);
            return;
        }
        send_upgrade(c);
        return;
    }
    flush_out(c);
}

static void check_timeouts(double now) {
    for (int i = 0; i < next_start; i++) {
        conn_t *c = &conns[i];
        if (c->state >= ST_CONNECT && c->state <= ST_SIO_OPEN && now - c->t0 > connect_timeout)
            fail(c, "connect:timeout");
        else if (c->state == ST_JOIN && now - c->t0 > join_timeout)
            fail(c, "join:timeout");
    }
}

/* --- the drain ------------------------------------------------------------------------ */

static long shortfall(long *extra) {
    long missing = 0;
    *extra = 0;
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->state != ST_LIVE && c->state != ST_CLOSED) continue;
        for (int j = 0; j < c->nrooms; j++) {
            croom_t *r = &c->rooms[j];
            if (!r->joined) continue;
            long final = room_finals[r->room];
            long want = kind == K_ECHO ? final : (final - r->base > 0 ? final - r->base : 0);
            if (r->count < want)
                missing += want - r->count;
            else
                *extra += r->count - want;
        }
    }
    return missing;
}

static void emit_done(long missing, long extra) {
    printf("{\"e\":\"done\",\"deliveries\":%ld,\"latency\":", sec_deliveries);
    hist_print(stdout, &h_sec);
    printf(",\"missing\":%ld,\"extra\":%ld,\"duplicates\":%ld,\"gaps\":%ld,\"resync\":%ld,"
           "\"errors\":",
           missing, extra, duplicates, gaps, resyncs);
    errors_print(stdout);
    fputs("}\n", stdout);
    fflush(stdout);
    hist_reset(&h_sec);
    sec_deliveries = 0;
    done_sent = 1;
}

/* --- commands ------------------------------------------------------------------------- */

static int started;

static char *next_word(char **s) {
    while (**s == ' ') (*s)++;
    if (!**s) return NULL;
    char *w = *s;
    while (**s && **s != ' ') (*s)++;
    if (**s) *(*s)++ = 0;
    return w;
}

static char *opt(char *w) { return (!w || !strcmp(w, "-")) ? NULL : xstrndup(w, strlen(w)); }

static void shutdown_all(void) {
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0 && conns[i].state == ST_LIVE) ws_send(&conns[i], 0x8, "\x03\xe8", 2);
    fflush(stdout);
    exit(0);
}

static void command(char *line) {
    char *s = line;
    char *w = next_word(&s);
    if (!w) return;
    if (!strcmp(w, "kind")) {
        char *k = next_word(&s);
        kind = !strcmp(k, "socketio") ? K_SOCKETIO : !strcmp(k, "echo") ? K_ECHO : K_PRODUCT;
    } else if (!strcmp(w, "target")) {
        char *h = next_word(&s);
        host = xstrndup(h, strlen(h));
        port = atoi(next_word(&s));
    } else if (!strcmp(w, "limits")) {
        concurrency = atoi(next_word(&s));
        connect_timeout = atof(next_word(&s));
        join_timeout = atof(next_word(&s));
    } else if (!strcmp(w, "client")) {
        conns = xrealloc(conns, (nconns + 1) * sizeof *conns);
        conn_t *c = &conns[nconns++];
        memset(c, 0, sizeof *c);
        c->fd = -1;
        c->path = opt(next_word(&s));
        c->token = opt(next_word(&s));
        c->name = opt(next_word(&s));
        c->source = opt(next_word(&s));
        char *room;
        while ((room = next_word(&s))) {
            c->rooms = xrealloc(c->rooms, (c->nrooms + 1) * sizeof *c->rooms);
            memset(&c->rooms[c->nrooms], 0, sizeof *c->rooms);
            c->rooms[c->nrooms++].room = room_index(room, strlen(room));
        }
    } else if (!strcmp(w, "start")) {
        started = 1;
    } else if (!strcmp(w, "go")) {
        go_at = atof(next_word(&s));
        going = 1;
        second = 0;
    } else if (!strcmp(w, "expect")) {
        double drain = atof(next_word(&s));
        char *room;
        while ((room = next_word(&s))) {
            char *final = next_word(&s);
            if (!final) break;
            room_finals[room_index(room, strlen(room))] = atol(final);
        }
        draining = 1;
        drain_until = mono_now() + drain;
    } else if (!strcmp(w, "quit")) {
        shutdown_all();
    } else {
        die("unknown command: %s", w);
    }
}

static char *lbuf;
static size_t llen, lcap;

/* reads what stdin has and runs every complete line; returns 0 at end of input */
static int read_commands(void) {
    if (lcap - llen < 65536) {
        lcap = (llen + 65536) * 2;
        lbuf = xrealloc(lbuf, lcap);
    }
    ssize_t n = read(0, lbuf + llen, lcap - llen);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    if (n == 0) return 0;
    llen += n;
    size_t pos = 0;
    char *nl;
    while ((nl = memchr(lbuf + pos, '\n', llen - pos))) {
        *nl = 0;
        command(lbuf + pos);
        pos = nl + 1 - lbuf;
    }
    memmove(lbuf, lbuf + pos, llen - pos);
    llen -= pos;
    return 1;
}

int main(void) {
    SCALE = 1.0 / log(1.01);
    NBUCKETS = (int)(log(1e9) * SCALE) + 2;
    hist_init(&h_connect);
    hist_init(&h_join);
    hist_init(&h_sec);
    rng ^= (uint64_t)getpid() << 32 ^ (uint64_t)(wall_now() * 1e6);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    while (!started)
        if (!read_commands()) return 0;

    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    if (getaddrinfo(host, portstr, &hints, &ai) || !ai) die("cannot resolve %s", host);
    memcpy(&target_addr, ai->ai_addr, sizeof target_addr);
    freeaddrinfo(ai);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);

    start_next();
    check_ready();
    struct epoll_event events[512];
    for (;;) {
        int timeout = 100;
        if (draining && !done_sent) timeout = 20;
        if (going && !done_sent) {
            int until = (int)((go_at + second + 1 - wall_now()) * 1000) + 1;
            if (until < timeout) timeout = until < 0 ? 0 : until;
        }
        int n = epoll_wait(epfd, events, 512, timeout);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            uint32_t k = events[i].data.u32;
            if (k == UINT32_MAX) {
                if (!read_commands()) shutdown_all();
                continue;
            }
            conn_t *c = &conns[k];
            if (c->fd < 0) continue;
            if (events[i].events & EPOLLOUT) on_writable(c);
            if (c->fd >= 0 && events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (c->state == ST_CONNECT) {
                    on_writable(c); /* a refused connect reports as readable too */
                    if (c->fd < 0 || c->state == ST_CONNECT) continue;
                }
                on_readable(c);
            }
        }
        if (!ready_sent) check_timeouts(mono_now());
        if (going && !done_sent)
            while (wall_now() >= go_at + second + 1) emit_tick();
        if (draining && !done_sent) {
            long extra, missing = shortfall(&extra);
            if (!missing || mono_now() >= drain_until) emit_done(missing, extra);
        }
    }
}
