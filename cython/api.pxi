# The module-level functions, here rather than in Python so that a small message pays for
# one call, not two: dumps/loads are most of what users call in hot loops.

cdef dict _DEFAULT_ENCODERS = {name: Encoder(name) for name in ("async", "sync", "response")}
cdef Encoder _ASYNC_ENCODER = _DEFAULT_ENCODERS["async"]
cdef Encoder _ASYNC_REFS_ENCODER = Encoder("async", refs=True)
cdef str _ASYNC = "async"     # the default's own object: dumps compares by identity first
cdef Decoder _DEFAULT_DECODER = Decoder()
cdef list _OPTION_ENCODERS = [{} for _ in range(8)]   # [q_compatible | refs << 1 | allow_on_disk << 2][msg_type]
cdef Decoder _STRICT_DECODER = Decoder(strict_fields=True)


def dumps(obj, protocol=None, *, msg_type="async", compress=False, buffer_callback=None, q_compatible=False,
          refs=False, registry=None, allow_on_disk=False, max_depth=None, zero_copy_threshold=None, capability=None,
          oob_threshold=None):
    """Serialize `obj` as one q IPC message and return it as a `Message`.

    protocol: accepted, as pickle.dumps(obj, protocol) takes it, and ignored (an int or None):
      qwire has one format.
    msg_type: "async" (0, the default), "sync" (1) or "response" (2): the header's message type.
    compress: False; True compresses with kdb+'s algorithm when kdb+ would find it worthwhile (the
      result is at most half the plain size, else the plain message is kept); "auto" also applies
      kdb+'s size threshold (messages under 2009 bytes stay plain).
    buffer_callback: pickle protocol 5's (see Encoder); with it, large vectors may travel out of
      band in an extension record, and the message is no longer pure kdb+ IPC.
    q_compatible: never write a qwire extension record: the message is pure kdb+ IPC, and a value
      that needs a record (tuple, set, registered object, ...) raises EncodeError naming it.
    refs: keep shared and circular references (an object reached twice comes back as one object);
      without it a cycle raises EncodeError.
    registry: the qwire.Registry of classes to write (default: qwire.default_registry).
    allow_on_disk: copy memory-mapped arrays, mmaps and open files in (default: OnDiskObjectError).
    max_depth, zero_copy_threshold, capability, oob_threshold: Encoder options (None: its default).
    """
    cdef Encoder enc
    cdef int flags
    if protocol is not None and type(protocol) is not int:
        raise TypeError(f"protocol must be an int or None (it is ignored), not {type(protocol).__name__}")
    if (msg_type is _ASYNC and buffer_callback is None and registry is None and q_compatible is False
            and allow_on_disk is False and max_depth is None and zero_copy_threshold is None
            and capability is None and oob_threshold is None and (refs is False or refs is True)):
        # The common calls, dumps(obj) and dumps(obj, refs=True): a default async Encoder, no lookups.
        enc = _ASYNC_REFS_ENCODER if refs else _ASYNC_ENCODER
    elif type(msg_type) is not str and type(msg_type) is not int:
        enc = Encoder(msg_type)         # raises the ValueError naming it (the caches below hash msg_type)
    elif (buffer_callback is not None or max_depth is not None or zero_copy_threshold is not None
            or capability is not None or oob_threshold is not None):
        # A one-off Encoder; the options left at None keep the Encoder's defaults. (Named options
        # rather than **options: a keyword call builds no dict on the paths above and below.)
        options = {name: value for name, value in (("max_depth", max_depth), ("zero_copy_threshold", zero_copy_threshold),
                                                   ("capability", capability), ("oob_threshold", oob_threshold))
                   if value is not None}
        enc = Encoder(msg_type, buffer_callback=buffer_callback, q_compatible=q_compatible, refs=refs,
                      registry=registry, allow_on_disk=allow_on_disk, **options)
    elif registry is None and q_compatible is False and refs is False and allow_on_disk is False:
        enc = _DEFAULT_ENCODERS.get(msg_type)
        if enc is None:
            enc = Encoder(msg_type)
    else:
        # the other combinations: an Encoder made once (per registry)
        flags = 0
        if q_compatible:
            flags |= 1
        if refs:
            flags |= 2
        if allow_on_disk:
            flags |= 4
        cache = <dict>_OPTION_ENCODERS[flags] if registry is None else _registry_cache(registry, flags)
        enc = cache.get(msg_type)
        if enc is None:
            enc = Encoder(msg_type, q_compatible=q_compatible, refs=refs, registry=registry, allow_on_disk=allow_on_disk)
            cache[msg_type] = enc
    msg = enc._encode(obj, enc.msg_type)
    if compress is not False:
        from qwire.compression import _compressed_for_dumps
        msg = _compressed_for_dumps(msg, compress)
    return msg


def loads(data, *, buffers=None, registry=None, strict_fields=False, max_depth=None, max_decompressed_size=None,
          max_message_size=None, max_expansion=DEFAULT_MAX_EXPANSION, max_decoded_size=None):
    """Deserialize one q IPC message from bytes, bytearray, memoryview, Message, mmap or any
    C-contiguous buffer (compressed messages included). Vectors whose wire layout equals NumPy's
    come back as read-only views into `data`, which they keep alive. Raises DecodeError on
    malformed input and QError when the message is a q error.
    buffers: the out-of-band buffers of a message written with a buffer_callback, in order.
    registry: the qwire.Registry of classes that may be built (default: qwire.default_registry);
      a record naming any other class raises UnregisteredTypeError. Nothing else is ever built:
      no __reduce__, no import, no eval.
    strict_fields: a registered dataclass or NamedTuple whose fields differ from this reader's is
      a DecodeError (by default missing fields take their defaults and unknown ones are ignored).
    max_depth, max_decompressed_size, max_message_size: as for Decoder (None: its default).
    max_expansion, max_decoded_size: the memory bound, as for Decoder (max_expansion=None: none).
    """
    # Named rather than **options: a **kwargs dict would be built and freed on every call.
    cdef Decoder dec
    if (max_depth is not None or max_decompressed_size is not None or max_message_size is not None
            or max_expansion is not DEFAULT_MAX_EXPANSION or max_decoded_size is not None):
        return Decoder(registry=registry, strict_fields=strict_fields,
                       max_depth=DEFAULT_MAX_DEPTH if max_depth is None else max_depth,
                       max_decompressed_size=max_decompressed_size,
                       max_message_size=max_message_size, max_expansion=max_expansion,
                       max_decoded_size=max_decoded_size)._decode(data, buffers)
    if registry is None:
        return (_STRICT_DECODER if strict_fields else _DEFAULT_DECODER)._decode(data, buffers)
    cache = _registry_cache(registry, "strict decoder" if strict_fields else "decoder")
    dec = cache.get(None)
    if dec is None:
        dec = Decoder(registry=registry, strict_fields=strict_fields)
        cache[None] = dec
    return dec._decode(data, buffers)


cdef dict _registry_cache(object registry, object key):
    # The Encoders or Decoders that dumps/loads made for this registry (kept on it).
    try:
        caches = registry._codec_cache
    except AttributeError:
        raise TypeError(f"registry must be a qwire.Registry, not {type(registry).__name__}") from None
    cache = caches.get(key)
    if cache is None:
        cache = caches.setdefault(key, {})
    return <dict>cache
