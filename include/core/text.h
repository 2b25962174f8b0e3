/* text.h - UTF-8 text, NFC normalisation (utf8proc) and the vocabulary.
 *
 * Reading rules: a leading byte-order mark is skipped, lines end in "\n"
 * or "\r\n", text is NFC-normalised, and invalid UTF-8 is an ERR_UTF8
 * whose message names the file, the 1-based line and the byte offset in
 * the file: "villes.txt:12: invalid UTF-8 at byte 345".
 *
 * Tokens: <pad> = 0, <SOS> = 1, <EOS> = 2, then the distinct code points of
 * the training text in ascending order.
 */
#ifndef VILLES_TEXT_H
#define VILLES_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum { TOK_PAD = 0, TOK_SOS = 1, TOK_EOS = 2, TOK_FIRST = 3 };

/* A text file decoded to NFC code points, split into lines. */
typedef struct txt_lines {
    int32_t *cp;      /* all code points, lines concatenated without line ends */
    size_t  *start;   /* n + 1 offsets: line i is cp[start[i] .. start[i+1]) */
    size_t   n;       /* number of lines (a final line without "\n" counts) */
} txt_lines;

/* Read `path` ("-" = stdin) as lines.  An empty file gives n == 0. */
err_code txt_read_lines(const char *path, txt_lines *out);
/* Same on a buffer; `name` is used in error messages only. */
err_code txt_parse_lines(const char *name, const uint8_t *buf, size_t len, txt_lines *out);
void     txt_lines_free(txt_lines *t);

/* Read `path` as one stream of code points (running text): BOM skipped,
 * "\r\n" turned into "\n", NFC.  Same errors as txt_read_lines. */
err_code txt_read_stream(const char *path, int32_t **cp, size_t *n);

/* Decode a NUL-terminated UTF-8 string (e.g. a --prefix argument), NFC. */
err_code txt_decode(const char *s, int32_t **cp, size_t *n);

/* Encode one code point as UTF-8 into out (>= 5 bytes, NUL-terminated);
 * returns the number of bytes (0 for an invalid code point). */
int txt_encode_cp(int32_t cp, char *out);

typedef struct txt_vocab {
    int      size;   /* number of tokens, specials included */
    int32_t *cp;     /* cp[t] for t >= TOK_FIRST, ascending; -1 for specials */
} txt_vocab;

/* Build from code points: the distinct ones, sorted, after the specials. */
err_code txt_vocab_build(txt_vocab *v, const int32_t *cp, size_t n);
void     txt_vocab_free(txt_vocab *v);
/* Token of a code point, or -1 when it is not in the vocabulary. */
int      txt_vocab_token(const txt_vocab *v, int32_t cp);
/* Encode n code points to tokens; ERR_ARG naming the first unknown
 * character ("character 'ß' (U+00DF) is not in the vocabulary"). */
err_code txt_vocab_encode(const txt_vocab *v, const int32_t *cp, size_t n, int *tok);
/* The printable text of a token ("<pad>", "<SOS>", "<EOS>" or the
 * character in UTF-8) into buf (>= 8 bytes); returns buf. */
const char *txt_token_str(const txt_vocab *v, int tok, char *buf);
/* JSON array of token strings, as stored in checkpoint metadata:
 * ["<pad>","<SOS>","<EOS>"," ","-","a",...].  Caller frees. */
err_code txt_vocab_to_json(const txt_vocab *v, char **json);
/* Parse that array back; ERR_FORMAT unless it is exactly the three
 * specials followed by single, strictly ascending code points. */
err_code txt_vocab_from_json(txt_vocab *v, const char *json);

#endif
