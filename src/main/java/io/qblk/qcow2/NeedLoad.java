package io.qblk.qcow2;

import java.io.IOException;

/** The operation needs a metadata cluster that is not cached: load {@link #offset}, then retry. */
final class NeedLoad extends MetaRetry {
    final long offset;
    final CachedTable.Kind kind;

    NeedLoad(long offset, CachedTable.Kind kind) {
        this.offset = offset;
        this.kind = kind;
    }

    @Override
    void resolve(MetadataCache cache) throws IOException {
        cache.load(offset, kind);
    }
}
