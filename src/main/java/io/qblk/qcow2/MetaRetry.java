package io.qblk.qcow2;

import java.io.IOException;

/**
 * Control flow inside the metadata lock: the operation cannot go on without something that must
 * not be waited for under the lock (a metadata cluster to load, a concurrent allocation to finish).
 * Nothing was changed; {@link MetadataCache#withMeta} drops the lock, calls {@link #resolve} and
 * runs the operation again.
 */
abstract sealed class MetaRetry extends RuntimeException permits NeedLoad, MetaRetry.AwaitAllocation {
    MetaRetry() {
        super(null, null, false, false);
    }

    /** Called without the metadata lock. */
    abstract void resolve(MetadataCache cache) throws IOException;

    /** Another request's allocating write of the same guest cluster is in flight. */
    static final class AwaitAllocation extends MetaRetry {
        private final InFlight allocation;

        AwaitAllocation(InFlight allocation) {
            this.allocation = allocation;
        }

        @Override
        void resolve(MetadataCache cache) throws IOException {
            allocation.await();
        }
    }
}
