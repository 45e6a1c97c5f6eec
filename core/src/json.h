/*
 * json.h: the small JSON writer behind kiwi_property and kiwi_trace.
 *
 * Strings: bytes 0x20..0x7e appear as themselves except '"' and '\\', which are escaped; every
 * other byte b is written as \u00XX. A reader recovers the exact bytes by mapping each code
 * point U+0000..U+00FF back to one byte (Latin-1), so binary keys round-trip.
 */
#ifndef KW_JSON_H
#define KW_JSON_H

#include "common.h"

void kw_json_string(kw_buf *out, const char *data, size_t len);

#endif /* KW_JSON_H */
