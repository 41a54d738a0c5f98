package io.qblk.qcow2;

/**
 * Control flow inside the metadata lock: the operation needs a metadata cluster that is not
 * cached. The caller drops the lock, loads {@link #offset} and retries; nothing was changed.
 */
final class NeedLoad extends RuntimeException {
    final long offset;
    final CachedTable.Kind kind;

    NeedLoad(long offset, CachedTable.Kind kind) {
        super(null, null, false, false);
        this.offset = offset;
        this.kind = kind;
    }
}
