package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.lang.invoke.VarHandle;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * The cached L2 tables and refcount blocks, and the metadata lock ({@code meta}) that guards every
 * in-memory metadata structure of the image. The lock is held only for in-memory work, never across
 * I/O: an operation that needs an uncached cluster throws {@link NeedLoad} and {@link #withMeta}
 * loads it without the lock, then retries. Concurrent misses on one cluster share one read
 * (single flight). Eviction takes only clean, unpinned clusters (so write-back happens only in a
 * flush); over budget with only dirty clusters left, the operation ends with a flush.
 */
final class MetadataCache {
    private final ReentrantLock meta = new ReentrantLock();
    private final IoBackend file;
    private final int cs;
    private final int l2Stride;
    private final long budget;
    private final EngineStats stats;
    private final BufferPool clusterPool;
    private final ConcurrentHashMap<Long, CachedTable> l2Cache = new ConcurrentHashMap<>();
    private final ConcurrentHashMap<Long, CachedTable> rbCache = new ConcurrentHashMap<>();
    private final ConcurrentHashMap<Long, CompletableFuture<CachedTable>> loading = new ConcurrentHashMap<>();
    private volatile long cachedBytes; // written under meta, read without it
    /**
     * A direct-mapped front of {@code l2Cache} for guest lookups (slot: cluster number mod
     * {@value #RECENT}), so a hit needs no boxed key. A slot only ever holds a table {@code l2Cache}
     * holds: whatever takes a table out of it or replaces it clears the table's slot ({@link #forgetRecent}),
     * and a lookup that filled a slot checks afterwards that the table is still cached.
     */
    private static final int RECENT = 64;
    private final AtomicReferenceArray<CachedTable> recentL2 = new AtomicReferenceArray<>(RECENT);
    private final int clusterBits;

    /** {@code l2Stride}: 8-byte words per L2 entry (2 with extended L2 entries). */
    MetadataCache(IoBackend file, int clusterSize, int l2Stride, long budget, EngineStats stats, BufferPool clusterPool) {
        this.l2Stride = l2Stride;
        this.file = file;
        this.cs = clusterSize;
        this.clusterBits = Integer.numberOfTrailingZeros(clusterSize);
        this.budget = budget;
        this.stats = stats;
        this.clusterPool = clusterPool;
    }

    void lock() { meta.lock(); }

    void unlock() { meta.unlock(); }

    interface MetaOp<T> {
        T run() throws IOException;
    }

    /**
     * Runs {@code op} under the metadata lock; when it reports a {@link MetaRetry} (a cluster to
     * load, an allocation to wait for), resolves that without the lock and runs {@code op} again.
     * The one place where the engine waits for anything on behalf of a locked operation.
     */
    <T> T withMeta(MetaOp<T> op) throws IOException {
        while (true) {
            MetaRetry retry;
            meta.lock();
            try {
                return op.run();
            } catch (MetaRetry r) {
                retry = r;
            } finally {
                meta.unlock();
            }
            retry.resolve(this);
        }
    }

    private ConcurrentHashMap<Long, CachedTable> map(CachedTable.Kind kind) {
        return kind == CachedTable.Kind.L2 ? l2Cache : rbCache;
    }

    /** Lock-free: the L2 table at {@code off}, loaded if need be (a guest lookup). */
    CachedTable l2(long off) throws IOException {
        int slot = recentSlot(off);
        CachedTable t = recentL2.get(slot);
        if (t == null || t.offset != off) {
            t = l2Cache.get(off);
            if (t == null) return load(off, CachedTable.Kind.L2);
            recentL2.set(slot, t);
            VarHandle.fullFence(); // the slot store before the re-check (forgetRecent: remove before the clear)
            if (l2Cache.get(off) != t) recentL2.compareAndSet(slot, t, null); // it left meanwhile: never keep it
        }
        stats.cacheHits.increment();
        if (!t.referenced) t.referenced = true;
        return t;
    }

    private int recentSlot(long off) {
        return (int) (off >>> clusterBits) & (RECENT - 1);
    }

    /** After {@code t} left {@code l2Cache} (or was replaced there): its slot no longer serves it. */
    private void forgetRecent(CachedTable t) {
        if (t != null && t.kind == CachedTable.Kind.L2) recentL2.compareAndSet(recentSlot(t.offset), t, null);
    }

    /** Under meta: the cached table at {@code off}, or {@link NeedLoad}. */
    CachedTable getLocked(long off, CachedTable.Kind kind) {
        CachedTable t = map(kind).get(off);
        if (t == null) throw new NeedLoad(off, kind);
        t.referenced = true;
        return t;
    }

    /** Under meta: a new, never written (fresh) table at {@code off}, cached and charged to the budget. */
    CachedTable addFreshLocked(long off, CachedTable.Kind kind) {
        CachedTable t = kind == CachedTable.Kind.L2 ? CachedTable.l2(off, null, cs, l2Stride) : CachedTable.refblock(off, null, cs);
        t.fresh = true;
        forgetRecent(map(kind).put(off, t));
        cachedBytes += cs;
        return t;
    }

    /** Under meta: forgets the cached table at {@code off} (its cluster was freed; a later use of the cluster must not see it). */
    void discardLocked(long off, CachedTable.Kind kind) {
        CachedTable gone = map(kind).remove(off);
        if (gone != null) {
            cachedBytes -= cs;
            forgetRecent(gone);
        }
    }

    /** Under meta: forgets every cached refcount block (check's rebuild replaces them all). */
    void dropRefblocksLocked() {
        cachedBytes -= (long) rbCache.size() * cs;
        rbCache.clear();
    }

    /** Under meta: every dirty cached table of {@code kind}. */
    void forEachDirtyLocked(CachedTable.Kind kind, Consumer<CachedTable> action) {
        for (CachedTable t : map(kind).values()) if (t.dirty()) action.accept(t);
    }

    /** Loads the table at {@code off} without the lock; concurrent loads of one cluster share one read. */
    CachedTable load(long off, CachedTable.Kind kind) throws IOException {
        ConcurrentHashMap<Long, CachedTable> map = map(kind);
        while (true) {
            CachedTable t = map.get(off);
            if (t != null) return t;
            CompletableFuture<CachedTable> f = new CompletableFuture<>();
            CompletableFuture<CachedTable> other = loading.putIfAbsent(off, f);
            if (other != null) {
                try {
                    t = other.join();
                    if (t.kind == kind) return t;
                    continue;
                } catch (CompletionException ce) {
                    if (ce.getCause() instanceof IOException io) throw io;
                    throw ce;
                }
            }
            try {
                t = map.get(off);
                if (t == null) {
                    if ((off & (cs - 1)) != 0 || off >= Qcow2Header.MAX_HOST_OFFSET)
                        throw new MetadataCorruption((kind == CachedTable.Kind.L2 ? "L2 table" : "refcount block") + " offset " + off + " is invalid");
                    MemorySegment buf = clusterPool.acquire();
                    try {
                        stats.cacheMisses.increment();
                        file.read(off, buf);
                        t = kind == CachedTable.Kind.L2 ? CachedTable.l2(off, buf, cs, l2Stride) : CachedTable.refblock(off, buf, cs);
                    } finally {
                        clusterPool.release(buf);
                    }
                    meta.lock();
                    try {
                        CachedTable ex = map.get(off);
                        if (ex != null) t = ex;
                        else {
                            map.put(off, t);
                            cachedBytes += cs;
                            evictLocked();
                        }
                    } finally {
                        meta.unlock();
                    }
                }
                f.complete(t);
                return t;
            } catch (Throwable ex) {
                f.completeExceptionally(ex);
                throw ex;
            } finally {
                loading.remove(off, f);
            }
        }
    }

    /** Under meta: clock sweep over clean, unpinned tables down to 7/8 of the budget. */
    void evictLocked() {
        if (cachedBytes <= budget) return;
        long target = budget - budget / 8;
        for (int pass = 0; pass < 2 && cachedBytes > target; pass++) {
            for (ConcurrentHashMap<Long, CachedTable> map : List.of(l2Cache, rbCache)) {
                for (var it = map.values().iterator(); it.hasNext() && cachedBytes > target; ) {
                    CachedTable t = it.next();
                    if (t.pins > 0 || t.dirty()) continue;
                    if (t.referenced) {
                        t.referenced = false;
                        continue;
                    }
                    it.remove();
                    cachedBytes -= cs;
                    forgetRecent(t);
                }
            }
        }
    }

    boolean overBudget() {
        return cachedBytes > budget;
    }
}
