# Small C helpers: byte swapping, unaligned loads and stores, civil-date arithmetic.

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    static inline uint16_t qw_bswap16(uint16_t x) { return __builtin_bswap16(x); }
    static inline uint32_t qw_bswap32(uint32_t x) { return __builtin_bswap32(x); }
    static inline uint64_t qw_bswap64(uint64_t x) { return __builtin_bswap64(x); }
    static inline int qw_add_overflow_i64(int64_t a, int64_t b, int64_t *r) { return __builtin_add_overflow(a, b, r); }
    static inline int qw_mul_overflow_i64(int64_t a, int64_t b, int64_t *r) { return __builtin_mul_overflow(a, b, r); }
    """
    uint16_t qw_bswap16(uint16_t x) nogil
    uint32_t qw_bswap32(uint32_t x) nogil
    uint64_t qw_bswap64(uint64_t x) nogil
    int qw_add_overflow_i64(int64_t a, int64_t b, int64_t* r) nogil
    int qw_mul_overflow_i64(int64_t a, int64_t b, int64_t* r) nogil


cdef inline int64_t floordiv64(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


# Days since 1970-01-01 <-> proleptic Gregorian (year, month, day); the well-known
# era-based algorithm, exact for the whole int32 range of q dates.
cdef inline void civil_from_days(int64_t z, int* y, int* m, int* d) noexcept nogil:
    z += 719468
    cdef int64_t era = floordiv64(z, 146097)
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t yy = yoe + era * 400
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    d[0] = <int>(doy - (153 * mp + 2) // 5 + 1)
    m[0] = <int>(mp + 3 if mp < 10 else mp - 9)
    y[0] = <int>(yy + (1 if m[0] <= 2 else 0))


cdef inline int64_t days_from_civil(int64_t y, int m, int d) noexcept nogil:
    if m <= 2:
        y -= 1
    cdef int64_t era = floordiv64(y, 400)
    cdef int64_t yoe = y - era * 400
    cdef int64_t mp = m - 3 if m > 2 else m + 9
    cdef int64_t doy = (153 * mp + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


# The C stack's floor for this thread, plus a reserve for raising the error: nesting (encoding or
# decoding) that reaches it is refused like nesting past max_depth, so that no max_depth setting can overflow a small
# thread stack (256 KiB threads hold the default with room to spare). Linux/glibc; elsewhere
# only max_depth applies.
cdef extern from *:
    """
    #define QW_STACK_RESERVE (64 * 1024)
    #if defined(__linux__) && defined(__GLIBC__)
    #include <pthread.h>
    static __thread const char *qw_stack_floor_tls = 0;
    static const char *qw_stack_floor(void) {
        if (!qw_stack_floor_tls) {
            pthread_attr_t a;
            void *lo = 0;
            size_t size = 0;
            if (pthread_getattr_np(pthread_self(), &a) == 0) {
                pthread_attr_getstack(&a, &lo, &size);
                pthread_attr_destroy(&a);
            }
            qw_stack_floor_tls = lo ? (const char *)lo + QW_STACK_RESERVE : (const char *)1;
        }
        return qw_stack_floor_tls;
    }
    #else
    static const char *qw_stack_floor(void) { return (const char *)1; }
    #endif
    """
    const char* qw_stack_floor() nogil
