/* bpe.h - a byte-pair-encoding (BPE) subword tokenizer over characters,
 * for running text.
 *
 * Tokens: those of the character vocabulary (txt_vocab: <pad> <SOS> <EOS>,
 * then the characters, n_base in all), then one token per merge: merge i
 * joins two earlier tokens (left, right) into token n_base + i.  A
 * tokenizer with no merges is the character vocabulary itself.
 *
 * Words: merges never cross a word boundary.  A word is a run of letters,
 * marks and digits with the one space before it, if any (" monsieur"), or
 * a run of other characters of one class (spaces; punctuation and
 * symbols), each newline alone; a word longer than BPE_MAX_CHARS
 * characters is cut into pieces of that length, so no token is longer.
 *
 * Learning (Sennrich et al. 2016) on the training text only: the words
 * with their counts; repeatedly the most frequent adjacent pair of tokens
 * inside words becomes a new token, until vocab_size tokens or no pair
 * occurs twice.  Ties go to the pair first in token order (left token,
 * then right), so learning is deterministic.  Pair counts are kept up to
 * date incrementally: a merge revisits only the words that contain the
 * pair (each pair keeps the list of its words).
 *
 * Encoding applies the merges in the order learned: in each word, the
 * adjacent pair of lowest merge rank is joined (every occurrence, left to
 * right), until no pair of the word is a merge.  On the training text this
 * gives the segmentation learning ended with.
 *
 * Checkpoints: metadata "tokenizer" = "bpe" and "merges" = the JSON array
 * of the merges' token pairs, [[left,right],...] (bpe_to_json); "vocab"
 * stays the character vocabulary.  bpe_from_json validates like the
 * checkpoint reader: every pair names earlier non-special tokens, no pair
 * twice, no token longer than BPE_MAX_CHARS characters.
 */
#ifndef VILLES_BPE_H
#define VILLES_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "text.h"

enum { BPE_MAX_CHARS = 32, BPE_MAX_TOKENS = 1 << 16 };

typedef struct bpe_pair_map bpe_pair_map;   /* (left, right) -> merge rank */

typedef struct bpe {
    int           n_base;       /* the character vocabulary's size */
    int           n_merges;
    int          *left, *right; /* (n_merges): merge i makes token n_base + i */
    int32_t      *cp;           /* the code points of every token, one after another */
    size_t       *start;        /* (n_base + n_merges + 1): token t is cp[start[t]..start[t+1]) */
    bpe_pair_map *rank;
    int           cap_merges;   /* room in left, right and start */
    size_t        cap_cp;       /* room in cp */
} bpe;

/* The tokenizer of v with no merges (characters). */
err_code bpe_init(bpe *b, const txt_vocab *v);
void     bpe_free(bpe *b);
int      bpe_n_tokens(const bpe *b);   /* n_base + n_merges */

/* Learn merges from the character tokens tok (n, of b's vocabulary) until
 * b has vocab_size tokens (or no pair occurs twice); b starts from
 * bpe_init.  ERR_ARG when vocab_size is below n_base or above BPE_MAX_TOKENS. */
err_code bpe_learn(bpe *b, const int *tok, size_t n, int vocab_size);

/* Encode character tokens chars (n) into *out (malloc'ed, *n_out tokens). */
err_code bpe_encode(const bpe *b, const int *chars, size_t n, int **out, size_t *n_out);
/* Characters of token t (0 for specials and tokens out of range). */
size_t   bpe_token_chars(const bpe *b, int t);
/* Token t as UTF-8 into buf (>= 4 BPE_MAX_CHARS + 1 bytes; "" for a
 * special); returns its byte length. */
int      bpe_token_utf8(const bpe *b, int t, char *buf);

/* The merges as JSON "[[l,r],...]" (caller frees), and back: b is v's
 * tokenizer with those merges; ERR_FORMAT naming the first bad merge. */
err_code bpe_to_json(const bpe *b, char **json);
err_code bpe_from_json(bpe *b, const txt_vocab *v, const char *json);

#endif
