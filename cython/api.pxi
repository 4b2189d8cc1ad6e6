# The module-level functions, here rather than in Python so that a small message pays for
# one call, not two: dumps/loads are most of what users call in hot loops.

cdef dict _DEFAULT_ENCODERS = {name: Encoder(name) for name in ("async", "sync", "response")}
cdef Decoder _DEFAULT_DECODER = Decoder()


def dumps(obj, *, msg_type="async", compress=False, buffer_callback=None, **options):
    """Serialize `obj` as one q IPC message and return it as a `Message`.

    msg_type: "async" (0, the default), "sync" (1) or "response" (2): the header's message type.
    compress: False; True compresses with kdb+'s algorithm when kdb+ would find it worthwhile (the
      result is at most half the plain size, else the plain message is kept); "auto" also applies
      kdb+'s size threshold (messages under 2009 bytes stay plain).
    buffer_callback: pickle protocol 5's (see Encoder); with it, large vectors may travel out of
      band in an extension record, and the message is no longer pure kdb+ IPC.
    options: Encoder options: max_depth, zero_copy_threshold, capability, oob_threshold.
    """
    cdef Encoder enc
    if buffer_callback is not None:
        enc = Encoder(msg_type, buffer_callback=buffer_callback, **options)
    elif options:
        enc = Encoder(msg_type, **options)
    else:
        enc = _DEFAULT_ENCODERS.get(msg_type)
        if enc is None:
            enc = Encoder(msg_type)
    msg = enc._encode(obj, enc.msg_type)
    if compress is not False:
        from qwire._api import _compress_message
        msg = _compress_message(msg, compress)
    return msg


def loads(data, *, buffers=None, **options):
    """Deserialize one q IPC message from bytes, bytearray, memoryview, Message, mmap or any
    C-contiguous buffer (compressed messages included). Vectors whose wire layout equals NumPy's
    come back as read-only views into `data`, which they keep alive. Raises DecodeError on
    malformed input and QError when the message is a q error.
    buffers: the out-of-band buffers of a message written with a buffer_callback, in order.
    options: Decoder options: max_depth, max_decompressed_size.
    """
    if options:
        return Decoder(**options)._decode(data, buffers)
    return _DEFAULT_DECODER._decode(data, buffers)
