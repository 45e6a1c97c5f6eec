/*
 * crc32c.h: CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the checksum of
 * every WAL record, manifest record and SSTable block.
 *
 * Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at run time with cpuid) and
 * a portable slicing-by-8 table otherwise. Thread-safe.
 */
#ifndef KW_CRC32C_H
#define KW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c of data[0..n), continuing from `crc` (0 to start). kw_crc32c_extend(0, "123456789", 9)
 * == 0xE3069283. */
uint32_t kw_crc32c_extend(uint32_t crc, const void *data, size_t n);
static inline uint32_t kw_crc32c(const void *data, size_t n) { return kw_crc32c_extend(0, data, n); }

/* The portable implementation alone (for tests that compare both paths). */
uint32_t kw_crc32c_portable(uint32_t crc, const void *data, size_t n);
/* True when the hardware path is in use. */
int kw_crc32c_hw_available(void);

#endif /* KW_CRC32C_H */
