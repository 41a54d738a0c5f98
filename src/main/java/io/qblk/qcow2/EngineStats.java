package io.qblk.qcow2;

import java.util.concurrent.atomic.LongAdder;

/**
 * Counters of one open image's metadata work, for metrics: cache hits and misses of L2 tables and
 * refcount blocks, clusters allocated, flushes and datasyncs. Cheap to bump from many threads.
 */
public final class EngineStats {
    final LongAdder cacheHits = new LongAdder();
    final LongAdder cacheMisses = new LongAdder();
    final LongAdder allocations = new LongAdder();
    final LongAdder flushes = new LongAdder();
    final LongAdder datasyncs = new LongAdder();
    final LongAdder holesPunched = new LongAdder();
    /** Write-through commits that wrote only R17 tail mappings, without a sync before their L2 writes. */
    final LongAdder tailCommits = new LongAdder();
    /** Writes handed to the frontend as a plan ({@link Qcow2Image#planWrite}, docs/ordering.md W2). */
    final LongAdder plannedWrites = new LongAdder();
    /** Allocating writes that could have mapped an R17 tail cluster but found none ready (they took the ordered path). */
    final LongAdder tailMisses = new LongAdder();
    /** Clusters the R17 reserve is topped up to (it grows after misses). */
    volatile int tailTarget;
    /** Bytes of metadata (tables, pages of tables, header fields) written by flushes and commits. */
    final LongAdder metadataBytesWritten = new LongAdder();

    /** Lookups of an L2 table answered from the metadata cache. */
    public long cacheHits() { return cacheHits.sum(); }

    /** L2 tables and refcount blocks read from the image because they were not cached. */
    public long cacheMisses() { return cacheMisses.sum(); }

    /** Host clusters allocated (data, L2 tables, refcount blocks). */
    public long allocations() { return allocations.sum(); }

    /** Calls of {@link Qcow2Image#flush()} (and of close) that reached the write-back. */
    public long flushes() { return flushes.sum(); }

    /** fdatasync calls issued by the engine. */
    public long datasyncs() { return datasyncs.sum(); }
    public long tailCommits() { return tailCommits.sum(); }
    public long plannedWrites() { return plannedWrites.sum(); }

    /** Allocating writes that found the R17 reserve empty and paid an ordered commit's sync instead. */
    public long tailMisses() { return tailMisses.sum(); }

    /** Clusters the R17 reserve is refilled to now (0: no reserve used yet). */
    public int tailTarget() { return tailTarget; }
    /** Bytes of metadata written by flushes and write-through commits (docs/ordering.md R18: only changed pages of a table). */
    public long metadataBytesWritten() { return metadataBytesWritten.sum(); }

    /** Freed host clusters punched out of the image file ({@link DiscardMode#UNMAP}). */
    public long holesPunched() { return holesPunched.sum(); }

    /** One line of the counters that explain write cost, as {@code qblk bench} and a ublk export's exit print them. */
    public String summary() {
        return String.format(java.util.Locale.ROOT, "%d allocations, %d flushes/commits, %d datasyncs, %d commits without a sync (R17), "
                + "%d allocations past an empty R17 reserve (reserve now %d clusters), %d bytes of metadata written",
                allocations(), flushes(), datasyncs(), tailCommits(), tailMisses(), tailTarget(), metadataBytesWritten());
    }
}
