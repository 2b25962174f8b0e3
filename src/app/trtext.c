/* trtext.c - running text for any sequence trainer; see trtext.h. */
#include "trtext.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char *const trt_tokenizers[] = { "char", "bpe", NULL };

/* Member key taken out of given (NULL when absent); the caller deletes it. */
static cJSON *take(cJSON *given, const char *key)
{
    return cJSON_DetachItemFromObjectCaseSensitive(given, key);
}

/* A copy of a flag's string that lives to the end of the program. */
static const char *keep_string(const cJSON *v)
{
    char *s = strdup(v->valuestring);
    if (!s) cli_die("out of memory");
    return s;
}

static void take_books(trt_text *t, cJSON *list)
{
    const cJSON *book;
    cJSON_ArrayForEach(book, list) {
        if (t->opt.n_books == TRT_MAX_BOOKS) cli_usage("more than %d --text files", TRT_MAX_BOOKS);
        t->books[t->opt.n_books++] = keep_string(book);
    }
    t->opt.books = t->books;
    t->on = t->opt.n_books > 0;
}

/* A running-text flag given without --text. */
static void text_only(const char *flag, const cJSON *v)
{
    if (v) cli_usage("%s applies to --text only", flag);
}

void trt_take(trt_text *t, cJSON *given, tr_options *o)
{
    cJSON *books = take(given, "text"), *val = take(given, "val_text"), *w = take(given, "window"),
          *keep = take(given, "keep_gutenberg"), *tok = take(given, "tokenizer"),
          *size = take(given, "bpe_vocab_size");
    take_books(t, books);
    if (!t->on) {
        text_only("--window", w);
        text_only("--val-text", val);
        text_only("--keep-gutenberg", keep);
        text_only("--tokenizer", tok);
        text_only("--vocab-size", size);
    }
    bool subwords = tok && !strcmp(tok->valuestring, "bpe");
    if (size && !subwords) cli_usage("--vocab-size applies to --tokenizer bpe only");
    t->opt.val_path = val ? keep_string(val) : NULL;
    t->opt.keep_gutenberg = keep != NULL;
    t->opt.vocab_size = subwords ? (size ? size->valueint : TRT_DEFAULT_VOCAB) : 0;
    t->tok_given = tok || size;
    t->window = w ? w->valueint : 0;
    cJSON *taken[] = { books, val, w, keep, tok, size };
    for (size_t i = 0; i < sizeof taken / sizeof *taken; i++) cJSON_Delete(taken[i]);
    if (!t->on) return;
    if (o->data) cli_usage("give --data (names) or --text (running text), not both");
    if (o->val_data) cli_usage("--val-data is for names: give --val-text FILE");
    if (o->dump_split) cli_usage("--dump-split applies to names only");
    if (o->n_folds || o->n_teachers) cli_usage("--fold and --teacher apply to names only");
    o->data = t->books[0];
}

/* A running-text model: its tokenizer in the metadata, or (RNNs trained
 * before the tokenizer was written) "text" in its config. */
static bool is_text_model(const ck_file *f)
{
    if (stm_is_text_model(f)) return true;
    cJSON *config = cJSON_Parse(ck_meta(f, "config"));
    bool text = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(config, "text"));
    cJSON_Delete(config);
    return text;
}

void trt_check_resume(const trt_text *t, const tr_session *s)
{
    if (!s->resuming) return;
    if (is_text_model(&s->resume) != t->on)
        cli_usage("%s is a %s model: resume it with %s", s->o.resume_path,
                  t->on ? "names" : "running-text", t->on ? "--data FILE" : "--text FILE");
    if (t->tok_given)
        cli_usage("--tokenizer and --vocab-size: on --resume the tokenizer is %s's",
                  s->o.resume_path);
}

void trt_load(trt_text *t, tr_session *s)
{
    if (s->resuming) {
        if (stm_read_tokenizer(&s->resume, s->o.resume_path, &t->resumed)) cli_die_err();
        t->opt.given = &t->resumed;
    }
    if (stm_corpus_load(&t->corpus, &t->opt)) cli_die_err();
    s->vocab = &t->corpus.vocab;
}

void trt_config(const trt_text *t, const tr_session *s, cJSON *config, const cJSON *given)
{
    if (t->on) trc_config_fresh(s, config, given, "vocab_size", bpe_n_tokens(&t->corpus.tok));
}

int trt_window(const trt_text *t, const tr_session *s)
{
    return stm_window(s->resuming ? &s->resume : NULL, t->window);
}

void trt_start(trt_text *t, const tr_session *s, const stm_model *sm, tr_model *m, tr_source *src)
{
    if (stm_source_init(&t->walk, sm, &t->corpus, trt_window(t, s), s->o.batch_size))
        cli_die_err();
    *m = stm_tr_model(&t->walk);
    *src = stm_tr_source(&t->walk);
}

void trt_free(trt_text *t)
{
    stm_source_free(&t->walk);
    stm_corpus_free(&t->corpus);
    bpe_free(&t->resumed);
    for (int i = 0; i < t->opt.n_books; i++) free((char *)t->books[i]);
    free((char *)t->opt.val_path);
    memset(t, 0, sizeof *t);
}

void trt_print_usage(FILE *f)
{
    fprintf(f,
"Running text:\n"
"      --text FILE        train on FILE as one stream of characters instead of\n"
"                         names (replaces --data); repeat it to join several\n"
"                         books.  The stream is cut into --batch-size tracks walked\n"
"                         one window per step.  Then 'generate -m MODEL --chars N'\n"
"                         writes running text and 'generate -m MODEL --score FILE'\n"
"                         scores one.  A byte-order mark is skipped, CRLF read as\n"
"                         LF, invalid UTF-8 is an error naming the file, line and byte\n"
"      --val-text FILE    hold out a whole book as the validation text (default:\n"
"                         the last 10%% of the training text)\n"
"      --keep-gutenberg   keep Project Gutenberg's header and footer; by default\n"
"                         everything up to the '*** START OF' line and from the\n"
"                         '*** END OF' line on is dropped, when present\n"
"      --window N         tokens per window (default %d, or the checkpoint's)\n"
"      --tokenizer T      char (the default) or bpe: byte-pair-encoding subwords\n"
"                         learned from the training text only, kept in the\n"
"                         checkpoint; the summary adds val_loss_per_char (total\n"
"                         nats / characters), comparable across tokenizers\n"
"      --vocab-size N     tokens of the bpe tokenizer, characters included\n"
"                         (default %d)\n"
"\n",
            STM_DEFAULT_WINDOW, TRT_DEFAULT_VOCAB);
}
