/*
 * json.c: JSON string escaping for introspection output (see json.h for the byte rules).
 */
#include "json.h"

void kw_json_string(kw_buf *out, const char *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    kw_buf_reserve(out, len + 2);
    kw_buf_push(out, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == '"' || c == '\\') {
            kw_buf_push(out, '\\');
            kw_buf_push(out, (char)c);
        } else if (c >= 0x20 && c < 0x7f) {
            kw_buf_push(out, (char)c);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            kw_buf_append(out, esc, sizeof esc);
        }
    }
    kw_buf_push(out, '"');
}
