#ifndef CMALLOCCOUNTER_H
#define CMALLOCCOUNTER_H
/// Allocations made by this process since it started (malloc, calloc, realloc, and the aligned
/// variants). Linked only into warren-microbench, whose definitions of malloc and friends
/// interpose glibc's for the whole process, the Swift runtime included.
unsigned long long warren_allocation_count(void);
#endif
