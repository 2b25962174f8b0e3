/* serve.c - generate --serve, the HTTP layer (libmicrohttpd); see serve.h.
 *
 * Threads: libmicrohttpd's pool answers requests in parallel.  Models are
 * loaded on first use and then shared read-only; each request has its own
 * stream (mdl_state).  explore's views run as a child process (explore
 * ends on a bad input, which must not end the server), its features page
 * computed once and kept. */
#include "serve.h"

#ifndef VILLES_HAVE_MHD

bool srv_available(void) { return false; }

err_code srv_run(const srv_config *c)
{
    (void)c;
    return err_set(ERR_ARG, "--serve is not built in: install libmicrohttpd-dev "
                            "(tools/install-deps.sh) and rebuild");
}

#else

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "generation.h"
#include "kinds.h"
#include "query.h"
#include "serve_page.h"
#include "text.h"

extern char **environ;

enum {
    SRV_MAX_MODELS = 32,
    SRV_MAX_URI = QRY_MAX_QUERY + 256,      /* bytes of a request's URI */
    SRV_MAX_HTML = 64 << 20,                /* bytes of an explore page */
    SRV_DIR = 3072,                         /* bytes of the weights directory's path */
    SRV_PATH = SRV_DIR + 1024,
};


typedef struct srv_model {
    char name[QRY_MAX_MODEL + 1];
    mdl  m;
} srv_model;

typedef struct server {
    const srv_config *c;
    char              weights[SRV_DIR];               /* the weights directory */
    char              default_model[QRY_MAX_MODEL + 1];
    char              explore[SRV_PATH];              /* the explore program */
    pthread_mutex_t   lock;                 /* models, features */
    srv_model         model[SRV_MAX_MODELS];
    int               n_models;
    char             *features;             /* explore's features page, once made */
    size_t            features_len;
} server;

/* What a handler answers. */
typedef struct reply {
    unsigned    status;
    char       *body;       /* malloc'ed */
    size_t      len;
    const char *type;
} reply;

/* ---- replies -------------------------------------------------------------- */

static reply json_reply(unsigned status, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return (reply){ 500, strdup("{\"error\":\"out of memory\"}"), 25, "application/json" };
    return (reply){ status, s, strlen(s), "application/json" };
}

static reply error_reply(unsigned status, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    if (o) cJSON_AddStringToObject(o, "error", msg);
    return json_reply(status, o);
}

/* ---- models --------------------------------------------------------------- */

static void model_path(const server *S, const char *name, char *path)
{
    snprintf(path, SRV_PATH, "%s/%s.safetensors", S->weights, name);
}

/* The loaded model `name` (a checked name), loading it on first use; NULL
 * with *status and err_msg() set. */
static const mdl *get_model(server *S, const char *name, unsigned *status)
{
    char path[SRV_PATH];
    model_path(S, name, path);
    pthread_mutex_lock(&S->lock);
    const mdl *m = NULL;
    for (int i = 0; i < S->n_models && !m; i++)
        if (!strcmp(S->model[i].name, name)) m = &S->model[i].m;
    if (m) {
        pthread_mutex_unlock(&S->lock);
        return m;
    }
    *status = 400;
    if (access(path, R_OK) != 0) {
        *status = 404;
        err_set(ERR_IO, "no model '%s' in the weights directory", name);
    } else if (S->n_models == SRV_MAX_MODELS) {
        *status = 503;
        err_set(ERR_NOMEM, "more than %d models", SRV_MAX_MODELS);
    } else if (mdl_load(&S->model[S->n_models].m, path) == ERR_OK) {
        snprintf(S->model[S->n_models].name, sizeof S->model[0].name, "%s", name);
        m = &S->model[S->n_models++].m;
    }
    pthread_mutex_unlock(&S->lock);
    return m;
}

static const char *model_name(const server *S, const qry_request *q)
{
    return q->model[0] ? q->model : S->default_model;
}

/* ---- the API -------------------------------------------------------------- */

static reply api_models(server *S)
{
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "models");
    cJSON_AddStringToObject(o, "default", S->default_model);
    DIR *d = opendir(S->weights);
    for (struct dirent *e; d && list && (e = readdir(d));) {
        size_t n = strlen(e->d_name), ext = strlen(".safetensors");
        if (n <= ext || strcmp(e->d_name + n - ext, ".safetensors")) continue;
        char name[QRY_MAX_MODEL + 1];
        if (n - ext > QRY_MAX_MODEL) continue;
        snprintf(name, sizeof name, "%.*s", (int)(n - ext), e->d_name);
        if (qry_model_name_ok(name) && strcmp(name, "sae")) cJSON_AddItemToArray(list, cJSON_CreateString(name));
    }
    if (d) closedir(d);
    return json_reply(200, o);
}

/* Lines of text as a JSON array of strings. */
static cJSON *lines_array(char *text)
{
    cJSON *a = cJSON_CreateArray();
    for (char *line = text, *nl; a && line && *line; line = nl ? nl + 1 : NULL) {
        if ((nl = strchr(line, '\n'))) *nl = 0;
        cJSON_AddItemToArray(a, cJSON_CreateString(line));
    }
    return a;
}

/* generate's own run (gen_run) on a stream of the model: the same names. */
static reply api_generate(server *S, const qry_request *q)
{
    unsigned status;
    const char *name = model_name(S, q);
    const mdl *m = get_model(S, name, &status);
    if (!m) return error_reply(status, err_msg());
    gen_options o;
    gen_options_init(&o);
    o.model = name;
    o.count = q->count;
    o.seed = q->seed;
    o.smp.temperature = (float)q->temperature;
    o.smp.top_k = q->top_k;
    o.prefix = q->prefix[0] ? q->prefix : NULL;
    o.batch = 1;   /* on this request's stream, on this thread */
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    mdl_state st;
    err_code e = out ? mdl_state_new(&st, m) : err_set(ERR_NOMEM, "out of memory");
    if (!e) {
        e = gen_run(&st, &o, out, out);
        mdl_state_free(&st);
    }
    if (out) fclose(out);
    reply r;
    if (e) r = error_reply(e == ERR_NOMEM ? 503 : 400, err_msg());
    else {
        cJSON *res = cJSON_CreateObject();
        cJSON_AddStringToObject(res, "model", name);
        cJSON_AddNumberToObject(res, "seed", (double)q->seed);
        cJSON_AddItemToObject(res, "names", lines_array(text));
        r = json_reply(200, res);
    }
    free(text);
    return r;
}

/* name as tokens of m (NFC, each character in the vocabulary, within the
 * model's limit); *tok malloc'ed. */
static err_code encode_name(const mdl *m, const char *name, int **tok, int *n)
{
    int32_t *cp = NULL;
    size_t len = 0;
    *tok = NULL;
    err_code e = txt_decode(name, &cp, &len);
    if (!e && len == 0) e = err_set(ERR_ARG, "parameter 'name' is missing or empty");
    if (!e && len > (size_t)mdl_max_chars(m))
        e = err_set(ERR_ARG, "'%s' has %zu characters, more than the model's %d", name, len, mdl_max_chars(m));
    if (!e && !(*tok = malloc(len * sizeof **tok))) e = err_set(ERR_NOMEM, "out of memory");
    if (!e) e = txt_vocab_encode(&m->vocab, cp, len, *tok);
    *n = (int)len;
    free(cp);
    return e;
}

/* Each letter's loss, a step at a time (mdl_scorer: generate --score's sum). */
static cJSON *score_letters(const mdl *m, mdl_state *st, const int *tok, int n, double *total)
{
    const int V = mdl_vocab_size(m);
    float *logits = malloc((size_t)V * sizeof *logits);
    cJSON *letters = logits ? cJSON_CreateArray() : NULL;
    mdl_scorer sc;
    int t = mdl_scorer_start(&sc, tok, n), i = 0;
    mdl_start(st);
    while (letters && t >= 0) {
        double before = sc.nll;
        mdl_next(st, t, logits);
        t = mdl_scorer_step(&sc, V, logits);
        char buf[8];
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "char", i < n ? txt_token_str(&m->vocab, tok[i], buf) : "<EOS>");
        cJSON_AddNumberToObject(l, "nll", sc.nll - before);
        cJSON_AddNumberToObject(l, "p", exp(before - sc.nll));
        cJSON_AddItemToArray(letters, l);
        i++;
    }
    *total = sc.nll;
    free(logits);
    return letters;
}

static reply api_score(server *S, const qry_request *q)
{
    unsigned status;
    const char *name = model_name(S, q);
    const mdl *m = get_model(S, name, &status);
    if (!m) return error_reply(status, err_msg());
    int *tok, n;
    mdl_state st;
    err_code e = encode_name(m, q->name, &tok, &n);
    if (!e) e = mdl_state_new(&st, m);
    if (e) {
        free(tok);
        return error_reply(e == ERR_NOMEM ? 503 : 400, err_msg());
    }
    double total = 0;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "model", name);
    cJSON_AddStringToObject(res, "name", q->name);
    cJSON_AddItemToObject(res, "letters", score_letters(m, &st, tok, n, &total));
    cJSON_AddNumberToObject(res, "total_loss", total);
    cJSON_AddNumberToObject(res, "loss_per_char", total / (n + 1));
    mdl_state_free(&st);
    free(tok);
    return json_reply(200, res);
}

/* ---- explore's views -------------------------------------------------------- */

/* explore ARGS (stdout captured, at most SRV_MAX_HTML bytes; stderr
 * dropped) as a reply: its page, or a 500 naming its exit status. */
static reply run_explore(char *const *argv)
{
    int fd[2];
    if (pipe(fd) != 0) return error_reply(500, "cannot make a pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = rc == 0 ? open_memstream(&buf, &len) : NULL;
    char chunk[65536];
    for (ssize_t k; out && (k = read(fd[0], chunk, sizeof chunk)) != 0;) {
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 || len + (size_t)k > SRV_MAX_HTML) break;
        fwrite(chunk, 1, (size_t)k, out);
    }
    close(fd[0]);
    if (out) fclose(out);
    int status = 0;
    if (rc == 0) waitpid(pid, &status, 0);
    if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        free(buf);
        char msg[256];
        snprintf(msg, sizeof msg, "explore failed (%s)", rc ? strerror(rc) : "see the server's models and data");
        return error_reply(rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 2 ? 400 : 500, msg);
    }
    return (reply){ 200, buf, len, "text/html; charset=utf-8" };
}

/* The Transformer and SAE of the weights directory. */
static void pair_paths(const server *S, char *model, char *sae)
{
    model_path(S, "transformer", model);
    model_path(S, "sae", sae);
}

static reply explore_features(server *S)
{
    pthread_mutex_lock(&S->lock);   /* made once; later requests wait for it */
    if (!S->features) {
        char model[SRV_PATH], sae[SRV_PATH];
        pair_paths(S, model, sae);
        char *argv[] = { S->explore, "features", "-m", model, "--sae", sae, "--data",
                         (char *)S->c->data, "--html", "-", NULL };
        reply r = run_explore(argv);
        if (r.status != 200) {
            pthread_mutex_unlock(&S->lock);
            return r;
        }
        S->features = r.body;
        S->features_len = r.len;
    }
    char *copy = malloc(S->features_len + 1);
    if (copy) memcpy(copy, S->features, S->features_len);
    size_t len = S->features_len;
    pthread_mutex_unlock(&S->lock);
    if (!copy) return error_reply(503, "out of memory");
    return (reply){ 200, copy, len, "text/html; charset=utf-8" };
}

static reply explore_attribute(server *S, const qry_request *q)
{
    if (!q->name[0]) return error_reply(400, "parameter 'name' is missing or empty");
    char model[SRV_PATH], sae[SRV_PATH], pos[16];
    pair_paths(S, model, sae);
    snprintf(pos, sizeof pos, "%d", q->pos < 0 ? 0 : q->pos);
    char *argv[] = { S->explore, "attribute", "-m", model, "--sae", sae, "--pos", pos,
                     "--html", "-", "--", (char *)q->name, NULL };
    return run_explore(argv);
}

/* ---- HTTP ------------------------------------------------------------------ */

static reply route(server *S, const char *url, const char *query)
{
    if (!strcmp(url, "/")) return (reply){ 200, strdup(srv_page), strlen(srv_page), "text/html; charset=utf-8" };
    if (!strcmp(url, "/api/models")) return api_models(S);
    if (!strcmp(url, "/explore/features")) return explore_features(S);
    bool gen = !strcmp(url, "/api/generate"), score = !strcmp(url, "/api/score");
    bool attribute = !strcmp(url, "/explore/attribute");
    if (!gen && !score && !attribute) return error_reply(404, "no such page");
    qry_request q;
    if (qry_parse(query, &q)) return error_reply(400, err_msg());
    return gen ? api_generate(S, &q) : score ? api_score(S, &q) : explore_attribute(S, &q);
}

/* The raw URI of each request, before libmicrohttpd splits it: the query
 * string is query.h's to parse.  NULL (then refused) when too long. */
static void *uri_log(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    return strlen(uri) <= SRV_MAX_URI ? strdup(uri) : NULL;
}

static void completed(void *cls, struct MHD_Connection *c, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
    free(*req_cls);
    *req_cls = NULL;
}

static enum MHD_Result send_reply(struct MHD_Connection *c, reply r)
{
    if (!r.body) r = (reply){ 500, NULL, 0, "text/plain" };
    struct MHD_Response *res = MHD_create_response_from_buffer(r.len, r.body ? r.body : (char *)"",
                                                               r.body ? MHD_RESPMEM_MUST_FREE
                                                                      : MHD_RESPMEM_PERSISTENT);
    if (!res) {
        free(r.body);
        return MHD_NO;
    }
    MHD_add_response_header(res, "Content-Type", r.type);
    MHD_add_response_header(res, "Cache-Control", "no-store");
    MHD_add_response_header(res, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ok = MHD_queue_response(c, r.status, res);
    MHD_destroy_response(res);
    return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **req_cls)
{
    server *S = cls;
    const char *uri = *req_cls;
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return send_reply(c, error_reply(405, "only GET is served"));
    if (*upload_size) return send_reply(c, error_reply(413, "no request body is taken"));
    if (!uri) return send_reply(c, error_reply(414, "the request's URI is too long"));
    const char *q = strchr(uri, '?');
    return send_reply(c, route(S, url, q ? q + 1 : NULL));
}

/* "[ADDR:]PORT" into sa. */
static err_code parse_listen(const char *s, struct sockaddr_in *sa)
{
    *sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    const char *colon = strrchr(s, ':'), *port = colon ? colon + 1 : s;
    char addr[64];
    if (colon) {
        snprintf(addr, sizeof addr, "%.*s", (int)(colon - s < 63 ? colon - s : 63), s);
        if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1)
            return err_set(ERR_ARG, "--serve '%s': '%s' is not an IPv4 address", s, addr);
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (!*port || *end || errno || p < 0 || p > 65535)
        return err_set(ERR_ARG, "--serve '%s': expected [ADDR:]PORT, PORT in 0..65535", s);
    sa->sin_port = htons((uint16_t)p);
    return ERR_OK;
}

bool srv_available(void) { return true; }

/* The weights directory and default model of c->model, explore's path. */
static err_code locate(server *S, const srv_config *c)
{
    const char *slash = strrchr(c->model, '/'), *base = slash ? slash + 1 : c->model;
    size_t n = strlen(base), ext = strlen(".safetensors");
    if (n > ext && !strcmp(base + n - ext, ".safetensors")) n -= ext;
    snprintf(S->default_model, sizeof S->default_model, "%.*s", (int)n, base);
    if (n > QRY_MAX_MODEL || !qry_model_name_ok(S->default_model))
        return err_set(ERR_ARG, "%s: not a model name the page can ask for", c->model);
    int dir_len = snprintf(S->weights, sizeof S->weights, "%.*s", slash ? (int)(slash - c->model) : 1,
                           slash ? c->model : ".");
    if (dir_len < 0 || (size_t)dir_len >= sizeof S->weights)
        return err_set(ERR_ARG, "%s: the directory's path is too long", c->model);
    char exe[SRV_DIR];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = 0;
    char *dir = strrchr(exe, '/');
    if (dir) *dir = 0;
    snprintf(S->explore, sizeof S->explore, "%s/explore", dir ? exe : ".");
    return ERR_OK;
}

err_code srv_run(const srv_config *c)
{
    struct sockaddr_in sa;
    err_code e = parse_listen(c->listen, &sa);
    if (e) return e;
    server *S = calloc(1, sizeof *S);
    if (!S) return err_set(ERR_NOMEM, "out of memory");
    S->c = c;
    pthread_mutex_init(&S->lock, NULL);
    unsigned status;
    if ((e = locate(S, c)) || (!get_model(S, S->default_model, &status) && (e = ERR_IO))) {
        pthread_mutex_destroy(&S->lock);
        free(S);
        return e;
    }
    sigset_t stop;   /* blocked before the daemon's threads start, so they inherit it */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL, handle, S,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_URI_LOG_CALLBACK, uri_log, S,
        MHD_OPTION_NOTIFY_COMPLETED, completed, S,
        MHD_OPTION_THREAD_POOL_SIZE, 4u,
        MHD_OPTION_CONNECTION_LIMIT, 512u,
        MHD_OPTION_CONNECTION_TIMEOUT, 30u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 512u,
        MHD_OPTION_END);
    if (!d) e = err_set(ERR_IO, "--serve %s: cannot listen there (%s)", c->listen, strerror(errno));
    else {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        char addr[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof addr);
        fprintf(c->info, "serving http://%s:%u/ (models from %s); Ctrl-C stops\n", addr,
                info ? info->port : ntohs(sa.sin_port), S->weights);
        fflush(c->info);
        int sig;
        sigwait(&stop, &sig);
        MHD_stop_daemon(d);
    }
    for (int i = 0; i < S->n_models; i++) mdl_free(&S->model[i].m);
    free(S->features);
    pthread_mutex_destroy(&S->lock);
    free(S);
    return e;
}

#endif
