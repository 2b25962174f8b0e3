/* fuzz_query.c - libFuzzer target for the API's query-string parser
 * (query.h).  Whatever the bytes, qry_parse returns without crashing; when
 * it accepts them, every value is within its bounds, the model is a plain
 * name, the prefix and the name are NUL-terminated within their buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"

static void require(int ok)
{
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *query = malloc(size + 1);
    if (!query) return 0;
    memcpy(query, data, size);
    query[size] = 0;   /* a query string stops at its first NUL */
    qry_request r;
    if (qry_parse(query, &r) == ERR_OK) {
        require(r.count >= 1 && r.count <= QRY_MAX_COUNT);
        require(r.temperature >= 0 && r.temperature <= 10);
        require(r.top_k >= 0 && r.top_k <= QRY_MAX_TOP_K);
        require(r.pos >= -1 && r.pos <= QRY_MAX_POS);
        require(memchr(r.prefix, 0, sizeof r.prefix) && memchr(r.name, 0, sizeof r.name));
        require(!r.model[0] || qry_model_name_ok(r.model));
        require(!strchr(r.model, '/') && !strstr(r.model, ".."));
    }
    free(query);
    return 0;
}
