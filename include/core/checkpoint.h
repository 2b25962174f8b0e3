/* checkpoint.h - safetensors files: reader with full validation, atomic writer.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON, then the raw
 * little-endian tensor bytes.  The JSON maps each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
 * end of the header) and may hold "__metadata__": {string: string}.
 *
 * The reader accepts every file the reference reader (huggingface/
 * safetensors) accepts, within the limits below, and rejects what it
 * rejects: header length at most 100,000,000 and within the file; the
 * header UTF-8 and strict JSON (RFC 8259: no raw control byte in a string,
 * numbers without leading zeros, only space, tab, LF and CR as whitespace,
 * allowed before and after the object); the header an object; dtype a
 * safetensors dtype; shape and data_offsets lists of unsigned integers
 * written as such (not 64.0, 6.4e1 or -0); size == product(shape) * dtype
 * size; sorted by offset, the tensors tile the data section from 0 to the
 * end of the file with no gap or overlap; __metadata__ string to string
 * (or null), at most once.
 *
 * villes is deliberately stricter on: dtypes other than F32 and I32
 * ("unsupported dtype"); a key other than dtype, shape and data_offsets in
 * a tensor entry (the reference ignores it); a duplicate tensor name or
 * __metadata__ key, even with the same value (the reference keeps the
 * last); an empty tensor name; \u0000 in any string (names and metadata
 * are C strings); more than 8 dimensions; integers above 2^53 in shape and
 * data_offsets (they pass through a double); dimensions or element counts
 * above 2^51, even in an empty tensor.
 * Any violation is one ERR_FORMAT line naming the file (byte positions
 * count from the start of the header); it never crashes.
 *
 * Metadata keys used by villes: format = "villes", format_version, model
 * (ngram / mlp / rnn / transformer / sae), config (JSON string), vocab (JSON
 * array), and for training state: step, split_seed, rng.  Optimiser moments
 * are tensors named "optim.m.<param>" and "optim.v.<param>".
 */
#ifndef VILLES_CHECKPOINT_H
#define VILLES_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define CK_FORMAT "villes"
#define CK_FORMAT_VERSION "1"
enum { CK_MAX_DIMS = 8, CK_MAX_HEADER = 100 * 1000 * 1000 };

typedef enum ck_dtype { CK_F32, CK_I32 } ck_dtype;

typedef struct ck_tensor {
    char    *name;
    ck_dtype dtype;
    int      ndim;
    int64_t  shape[CK_MAX_DIMS];
    size_t   numel;
    void    *data;    /* numel elements, aligned, little-endian native */
} ck_tensor;

typedef struct ck_file {
    ck_tensor *t;     /* tensors in file order */
    int        n;
    char     **key, **val;   /* __metadata__ entries */
    int        n_meta;
    void      *mem;   /* owned storage */
} ck_file;

/* Read and validate `path`.  On error *f is left empty (safe to ck_free). */
err_code ck_read(const char *path, ck_file *f);
/* Same on a buffer in memory (fuzz target); `name` is for messages. */
err_code ck_parse(const char *name, const uint8_t *buf, size_t len, ck_file *f);
void     ck_free(ck_file *f);

/* A view of the tensors and metadata of f whose names start with prefix,
 * the prefix removed (a model stored inside another, e.g. a mixture's
 * "components.0.").  Tensor data is shared: f must outlive the view.
 * Free it with ck_free. */
err_code ck_sub(const ck_file *f, const char *prefix, ck_file *out);

/* NULL-safe look-ups: NULL when f is NULL or the entry is absent. */
const ck_tensor *ck_get(const ck_file *f, const char *name);
const char      *ck_meta(const ck_file *f, const char *key);

/* Checked access for model loaders: the tensor `name` must exist, be F32
 * and have exactly the given shape, else ERR_FORMAT naming it. */
err_code ck_get_f32(const ck_file *f, const char *name, int ndim, const int64_t *shape,
                    const float **data);
/* The file's `format` must be "villes" and its `model` equal `kind`, else
 * ERR_FORMAT ("not a villes checkpoint") or ERR_MISMATCH ("x.safetensors
 * holds a 'ngram' model, not a 'mlp'"). */
err_code ck_expect_model(const ck_file *f, const char *path, const char *kind);

/* Writer: collect metadata (copied) and tensors (referenced, not copied:
 * the data must stay valid until ck_write returns), then write to
 * path.tmp.XXXXXX, fsync, and rename over path; on any error the temporary
 * file is removed and path is untouched.  path "-" writes to stdout. */
typedef struct ck_writer ck_writer;
ck_writer *ck_writer_new(void);
void       ck_writer_free(ck_writer *w);
err_code   ck_put_meta(ck_writer *w, const char *key, const char *val);
err_code   ck_put(ck_writer *w, const char *name, ck_dtype dtype, int ndim,
                  const int64_t *shape, const void *data);
err_code   ck_write(ck_writer *w, const char *path);

/* Provenance: a JSON object (what made the file: program, version, data,
 * command line) that every checkpoint this process writes afterwards
 * carries as the metadata entry "provenance", unless the writer already
 * has one.  Process-wide, copied; set by the program layer at start-up
 * (before any thread); NULL clears it.  ERR_NOMEM only. */
#define CK_PROVENANCE_KEY "provenance"
err_code ck_set_provenance(const char *json);
const char *ck_provenance(void);

/* 64-bit FNV-1a: h (CK_FNV1A_BASIS to start) updated with n bytes. */
#define CK_FNV1A_BASIS 0xcbf29ce484222325u
uint64_t ck_fnv1a(uint64_t h, const void *data, size_t n);

/* 64-bit FNV-1a hash of a file's bytes, as 16 hex digits (SAE <-> model pairing). */
err_code ck_file_hash(const char *path, char out[17]);

#endif
