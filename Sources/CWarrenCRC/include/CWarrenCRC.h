#ifndef CWARRENCRC_H
#define CWARRENCRC_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli), as used by iSCSI, ext4 and most storage engines: continues `crc`
/// (start with 0) over `length` bytes. Uses the SSE4.2 crc32 instruction when the CPU has it.
uint32_t warren_crc32c(uint32_t crc, const void *data, size_t length);

/// The portable table-driven path, exposed so tests can check both give the same answers.
uint32_t warren_crc32c_portable(uint32_t crc, const void *data, size_t length);

#endif
