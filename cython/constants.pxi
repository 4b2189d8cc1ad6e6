# q type codes, mirrored from src/qwire/qtypes.py (tests/test_constants.py checks they agree).
cdef enum:
    QT_LIST = 0
    QT_BOOLEAN = 1
    QT_GUID = 2
    QT_BYTE = 4
    QT_SHORT = 5
    QT_INT = 6
    QT_LONG = 7
    QT_REAL = 8
    QT_FLOAT = 9
    QT_CHAR = 10
    QT_SYMBOL = 11
    QT_TIMESTAMP = 12
    QT_MONTH = 13
    QT_DATE = 14
    QT_DATETIME = 15
    QT_TIMESPAN = 16
    QT_MINUTE = 17
    QT_SECOND = 18
    QT_TIME = 19
    QT_TABLE = 98
    QT_DICT = 99
    QT_LAMBDA = 100
    QT_UNARY_PRIMITIVE = 101
    QT_BINARY_PRIMITIVE = 102
    QT_ITERATOR = 103
    QT_PROJECTION = 104
    QT_COMPOSITION = 105
    QT_EACH = 106
    QT_EACH_LEFT = 111
    QT_EXTENSION = 112
    QT_SORTED_DICT = 127
    QT_ERROR = -128

# Element width in bytes of each vector type 0..19 (0: variable or not a type).
cdef Py_ssize_t[20] ELEMENT_WIDTH
ELEMENT_WIDTH[:] = [0, 1, 16, 0, 1, 2, 4, 8, 4, 8, 1, 0, 8, 4, 4, 8, 8, 4, 4, 4]

cdef enum:
    RECORD_MAX_KEYS = 32        # dicts up to this size take the record path (key bytes reused)
    KEY_CACHE_BYTES = 256       # an Encoder keeps the last record's key bytes up to this size
    GC_PAUSE_MIN_BYTES = 4096   # decoding a message this big pauses the cyclic GC
    HEADER_SIZE = 8
    ATTR_LONG_COUNT = 0x80   # attribute bit: the count that follows is 8 bytes (capability 6)
    MAX_ATTRIBUTE = 4

# Sentinels (spec 2.2): null is the most negative value, +inf the most positive, -inf null+1.
cdef int16_t NULL_SHORT = -32768
cdef int32_t NULL_INT = -2147483648
cdef int32_t INF_INT = 2147483647
cdef int64_t NULL_LONG = -9223372036854775807 - 1
cdef int64_t INF_LONG = 9223372036854775807

# Epoch offsets between q (2000-01-01) and NumPy/Unix (1970-01-01).
cdef int64_t EPOCH_DAYS = 10957
cdef int64_t EPOCH_MONTHS = 360
cdef int64_t NS_PER_DAY = 86400000000000
cdef int64_t EPOCH_NS = 10957 * 86400000000000
cdef int64_t MS_PER_DAY = 86400000

# q's current null patterns for float atoms (spec 2.2).
cdef uint64_t Q_NULL_FLOAT_BITS = 0xFFF8000000000000
cdef uint32_t Q_NULL_REAL_BITS = 0xFFC00000

# Limits: defaults for the options of Encoder/Decoder (SECURITY.md lists them).
DEFAULT_MAX_DEPTH = 256
MAX_DEPTH_LIMIT = 100000    # the most max_depth may be set to; the thread's stack floor also applies
DEFAULT_ZERO_COPY_THRESHOLD = 64 * 1024
DEFAULT_OOB_THRESHOLD = 64 * 1024
# Copies of shared structure (refs=False writes a container reached twice twice): the bytes of
# copies may be at most DEFAULT_MAX_SHARED_EXPANSION times the bytes of distinct content, plus
# SHARED_COPY_ALLOWANCE; only containers of at least SHARED_SPAN_MIN bytes are followed (refs.pxi).
DEFAULT_MAX_SHARED_EXPANSION = 64
cdef enum:
    SHARED_COPY_ALLOWANCE = 16 * 1024 * 1024
    SHARED_SPAN_MIN = 64 * 1024

# Extension record codes the core handles itself (docs/FORMAT.md); 0x30..0x3F are reserved.
cdef enum:
    EXT_OUT_OF_BAND = 0x30

# Message type names accepted by msg_type=.
MSG_TYPES = {"async": 0, "sync": 1, "response": 2, 0: 0, 1: 1, 2: 2}

TYPE_CODES = {
    "LIST": QT_LIST, "BOOLEAN": QT_BOOLEAN, "GUID": QT_GUID, "BYTE": QT_BYTE, "SHORT": QT_SHORT,
    "INT": QT_INT, "LONG": QT_LONG, "REAL": QT_REAL, "FLOAT": QT_FLOAT, "CHAR": QT_CHAR,
    "SYMBOL": QT_SYMBOL, "TIMESTAMP": QT_TIMESTAMP, "MONTH": QT_MONTH, "DATE": QT_DATE,
    "DATETIME": QT_DATETIME, "TIMESPAN": QT_TIMESPAN, "MINUTE": QT_MINUTE, "SECOND": QT_SECOND,
    "TIME": QT_TIME, "TABLE": QT_TABLE, "DICT": QT_DICT, "LAMBDA": QT_LAMBDA,
    "UNARY_PRIMITIVE": QT_UNARY_PRIMITIVE, "BINARY_PRIMITIVE": QT_BINARY_PRIMITIVE,
    "ITERATOR": QT_ITERATOR, "PROJECTION": QT_PROJECTION, "COMPOSITION": QT_COMPOSITION,
    "EACH": QT_EACH, "EACH_LEFT": QT_EACH_LEFT, "EXTENSION": QT_EXTENSION,
    "SORTED_DICT": QT_SORTED_DICT, "ERROR": QT_ERROR,
}


cdef inline bint _special64(int64_t v) noexcept nogil:
    """q's null or ±inf for the int64-based types."""
    return v == NULL_LONG or v == INF_LONG or v == -INF_LONG
