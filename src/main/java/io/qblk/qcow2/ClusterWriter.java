package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;

/**
 * The write paths: writes into allocated clusters (one pwrite), allocating writes (copy-on-write
 * of zero, compressed, shared or unallocated clusters), write-zeroes and discard, preallocation.
 * Mapping changes are made in memory under the metadata lock, always <em>after</em> the data they
 * map was written (rule R1) and after the allocator raised the refcount (R2); the clusters they
 * unmap are queued as frees (R4). {@link WriteBack} writes them in rule order.
 *
 * <p>A guest cluster being allocated is registered <em>in flight</em>: every other writer, zeroer
 * or discarder of that cluster waits for it, so a guest cluster is never allocated twice.
 */
final class ClusterWriter {
    private final IoBackend file;
    private final Geometry geo;
    private final MetadataCache cache;
    private final ClusterMap map;
    private final RefcountAllocator alloc;
    private final OverlapCheck overlap;
    private final WriteGuard guard;
    private final WriteBack writeBack;
    private final ClusterReader reader;
    private final BackingChain backing;
    private final IoEpochs epochs;
    private final SharedExclusiveLock exclusive;
    private final BufferPool clusterPool;
    private final MemorySegment zeroCluster;
    private final int cs, clusterBits;
    /** Guest clusters whose allocating write is in flight; guarded by the metadata lock. */
    private final HashMap<Long, InFlight> inflight = new HashMap<>();

    ClusterWriter(IoBackend file, Geometry geo, MetadataCache cache, ClusterMap map, RefcountAllocator alloc, OverlapCheck overlap,
            WriteGuard guard, WriteBack writeBack, ClusterReader reader, BackingChain backing, IoEpochs epochs,
            SharedExclusiveLock exclusive, BufferPool clusterPool) {
        this.file = file;
        this.geo = geo;
        this.cache = cache;
        this.map = map;
        this.alloc = alloc;
        this.overlap = overlap;
        this.guard = guard;
        this.writeBack = writeBack;
        this.reader = reader;
        this.backing = backing;
        this.epochs = epochs;
        this.exclusive = exclusive;
        this.clusterPool = clusterPool;
        this.cs = geo.clusterSize;
        this.clusterBits = geo.clusterBits;
        this.zeroCluster = Arena.ofAuto().allocate(cs, 4096);
    }

    // ---------------------------------------------------------------- write

    /** Writes guest bytes (range already checked). */
    void write(long offset, MemorySegment src) throws IOException {
        long len = src.byteSize();
        guard.checkWritable();
        guard.beforeChange();
        boolean mapped = false, inPlace = false;
        exclusive.lockShared();
        try {
            long pos = 0;
            while (pos < len) {
                long gOff = offset + pos;
                long g = gOff >>> clusterBits;
                int in = (int) (gOff & (cs - 1));
                long n = Math.min(cs - in, len - pos);
                int slot = epochs.enter(); // R5: lookup and pwrite in one grace-period section
                try {
                    if (geo.extendedL2) {
                        long run = writeAllocatedSubclusters(g, in, n, len - pos, src.asSlice(pos));
                        if (run > 0) {
                            pos += run;
                            inPlace = true;
                            continue;
                        }
                    } else {
                    long e = map.lookup(g);
                    if (geo.typeOf(e) == L2Entry.NORMAL && (e & L2Entry.COPIED) != 0) {
                        long host = geo.hostOf(e, g);
                        long run = map.contiguousRun(g, host, n, len - pos, true);
                        String bad = overlap.dataOverlap(host, in + run);
                        if (bad != null) throw new MetadataCorruption(bad);
                        file.write(host + in, run == len ? src : src.asSlice(pos, run)); // the whole request: no slice
                        writeBack.dataWritten(); // after completion: a flush that starts later must sync
                        pos += run;
                        inPlace = true;
                        continue;
                    }
                    }
                } finally {
                    epochs.exit(slot);
                }
                if (geo.extendedL2) {
                    long done = allocatingSubclusterWrite(g, in, src.asSlice(pos, n));
                    if (done > 0) {
                        pos += done;
                        mapped = true;
                    }
                } else if (allocatingWrite(g, in, src.asSlice(pos, n))) {
                    pos += n;
                    mapped = true;
                }
            }
        } catch (MetadataCorruption c) {
            throw guard.corrupted(c);
        } finally {
            exclusive.unlockShared();
        }
        writeBack.afterRequest(mapped, inPlace);
    }

    /**
     * Fills {@code plan} when writing {@code src} at guest {@code offset} is one plain write of the
     * file into clusters that need nothing else: standard L2, a run of contiguous host clusters mapped
     * NORMAL and COPIED covering the whole request, their mapping already in the file when metadata
     * is written through (W1 holds without waiting), and a backend that writes through a descriptor.
     * The lookup's {@link IoEpochs} section stays entered until the plan is released (R5), and the
     * write counts as in flight from now until then (W2: a flush meanwhile syncs). The returned token
     * holds the epoch slot and stripe in its low 16 bits; -1 (nothing held) when the request needs
     * {@link #write}.
     */
    long planWrite(long offset, MemorySegment src, io.qblk.io.FilePlan plan, io.qblk.io.FilePlan.Holder holder, long heldToken)
            throws IOException {
        if (geo.extendedL2) return -1;
        guard.checkWritable();
        guard.beforeChange();
        long len = src.byteSize();
        long g = offset >>> clusterBits;
        int in = (int) (offset & (cs - 1));
        int stripe = IoEpochs.stripe();
        int slot = epochs.enter(stripe);
        boolean planned = false;
        try {
            long e = map.lookup(g);
            if (geo.typeOf(e) != L2Entry.NORMAL || (e & L2Entry.COPIED) == 0) return -1;
            long host = geo.hostOf(e, g);
            if (map.contiguousRun(g, host, Math.min(cs - in, len), len, true) != len) return -1;
            if (overlap.dataOverlap(host, in + len) != null) return -1; // write() reports it
            if (writeBack.writeThrough() && !writeBack.mappingsCommitted()) return -1; // W1 would wait: write() does
            int fd = file.plainFd(host + in, src);
            if (fd < 0) return -1;
            writeBack.plannedWriteStarted(); // W2: before the write is submitted
            long token = IoEpochs.plannedToken(heldToken, stripe, slot);
            plan.set(file, fd, host + in, holder, token);
            planned = true;
            return token;
        } finally {
            if (!planned) epochs.exit(slot, stripe);
        }
    }

    /** Ends a planned write: counted as completed (W2), then its epoch section (token as in {@link #planWrite}). */
    void releasePlan(long token) {
        writeBack.plannedWriteDone();
        epochs.exitPlanned(token);
    }

    /** A guest cluster claimed for an allocating write: its L2 table (pinned), old entry and new host cluster. */
    private record Claim(CachedTable table, long old, long host, boolean fresh, boolean tail, InFlight mine) {}

    /** Under meta: registers the allocation of guest cluster g as in flight and pins its L2 table. */
    private Claim claimLocked(long g, CachedTable t, long old, long host, boolean fresh, boolean tail) {
        InFlight mine = new InFlight();
        inflight.put(g, mine);
        t.pins++;
        return new Claim(t, old, host, fresh, tail, mine);
    }

    /**
     * Writes into guest cluster g when it is not a plain allocated cluster: allocates a host
     * cluster (or reuses a preallocated zero cluster), writes the whole cluster (old contents or
     * zeroes or backing data around {@code part}), then maps it. Returns false if the caller must
     * look the cluster up again (another writer mapped it meanwhile).
     */
    private boolean allocatingWrite(long g, int in, MemorySegment part) throws IOException {
        int idx = geo.l2Index(g);
        Claim c = cache.withMeta(() -> {
            CachedTable t = tableForAllocationLocked(g);
            long old = t.entry(idx);
            int type = geo.typeOf(old);
            if (type == L2Entry.NORMAL && (old & L2Entry.COPIED) != 0) return null;
            long host;
            boolean fresh, tail = false;
            if (type == L2Entry.ZERO_ALLOC && (old & L2Entry.COPIED) != 0) {
                host = geo.hostOf(old, g);
                String bad = overlap.dataOverlapLocked(host);
                if (bad != null) throw new MetadataCorruption(bad);
                fresh = false;
            } else {
                // R17: where the guest reads zeroes and no host cluster is dropped, a ready tail cluster
                // (refcount durable, reads as zeroes durably) needs no sync before its L2 write
                host = (type == L2Entry.UNALLOCATED || type == L2Entry.ZERO_PLAIN) && writeBack.usesTail() && reader.oldReadsAsZero(g, old)
                        ? alloc.takeTailLocked() : -1;
                tail = host >= 0;
                if (!tail) host = alloc.allocClusterLocked(null); // R2: refcount raised before anything maps it
                fresh = true;
            }
            return claimLocked(g, t, old, host, fresh, tail);
        });
        if (c == null) return false;

        MemorySegment buf = null;
        try {
            MemorySegment out = part;
            long at = c.host;
            if (in != 0 || part.byteSize() != cs) {
                if (reader.oldReadsAsZero(g, c.old)) {
                    // The rest of the cluster must read as zero: say so with one fallocate instead of
                    // writing a cluster of zeroes around the guest bytes (R1 covers both writes).
                    // A tail cluster (R17) reads as zeroes already, durably.
                    if (!c.tail) file.zeroRange(c.host, cs);
                    at = c.host + in;
                } else {
                    buf = clusterPool.acquire();
                    reader.oldContents(g, c.old, buf);
                    buf.asSlice(in, part.byteSize()).copyFrom(part);
                    out = buf;
                }
            }
            file.write(at, out);
            writeBack.dataWritten();
        } catch (Throwable ex) {
            // Unreferenced: given back after the next flush (a leak at worst if we crash first).
            abandon(c, g);
            throw ex;
        } finally {
            if (buf != null) clusterPool.release(buf);
        }
        // R1: the data is written; only now does the entry map it.
        release(c, g, () -> {
            long cur = c.table.entry(idx);
            // W1: counted before the entry is stored
            if (c.tail) writeBack.tailMappingChangedLocked();
            else writeBack.mappingChangedLocked();
            c.table.setEntry(idx, c.host | L2Entry.COPIED);
            if (c.fresh || geo.typeOf(cur) != L2Entry.ZERO_ALLOC || (cur & L2Entry.OFFSET_MASK) != c.host) alloc.queueEntryFreeLocked(cur);
        });
        return true;
    }

    /** Under meta: the L2 table for a mapping change of guest cluster g, once no allocating write of g is in flight. */
    private CachedTable tableForAllocationLocked(long g) throws IOException {
        guard.checkWritable();
        InFlight other = inflight.get(g);
        if (other != null) throw new MetaRetry.AwaitAllocation(other);
        return map.l2ForWriteLocked(g);
    }

    /** After a failed data write: releases the claim; a new cluster, unreferenced, is given back after the next flush (a leak at worst if we crash first). */
    private void abandon(Claim c, long g) {
        release(c, g, () -> {
            if (c.fresh) alloc.queueFreeLocked(new HostRun(c.host, 1));
        });
    }

    /** Under meta runs {@code lastChange}, then releases the claim on guest cluster g (its pinned table, its in-flight mark) and wakes its waiters. */
    private void release(Claim c, long g, Runnable lastChange) {
        cache.lock();
        try {
            lastChange.run();
            c.table.pins--;
            inflight.remove(g);
        } finally {
            cache.unlock();
        }
        c.mine.finish();
    }

    // ---------------------------------------------------------------- extended L2: subclusters

    /**
     * Extended L2, inside an epoch section: when byte {@code in} of guest cluster g lies in an
     * allocated subcluster of a cluster this image owns (COPIED), writes the run of allocated
     * subclusters from there in place (continuing into contiguous fully allocated clusters) and
     * returns the bytes written; 0 when the write must allocate.
     */
    private long writeAllocatedSubclusters(long g, int in, long n, long remaining, MemorySegment src) throws IOException {
        L2Entry.Pair p = map.lookupPair(g);
        long e = p.entry(), bm = p.bitmap();
        if (geo.typeOf(e) != L2Entry.NORMAL || (e & L2Entry.COPIED) == 0) return 0;
        reader.checkBitmap(g, e, bm);
        int s = geo.subOf(in);
        if (L2Entry.subType(bm, s) != L2Entry.SUB_DATA) return 0;
        int sub = L2Entry.subRun(bm, s, geo.subOf((int) (in + n - 1)) + 1);
        long run = Math.min(((long) (s + sub) << geo.subclusterBits) - in, n);
        long host = geo.hostOf(e, g);
        if (in + run == cs) run = map.contiguousRun(g, host, run, remaining, true);
        String bad = overlap.dataOverlap(host, in + run);
        if (bad != null) throw new MetadataCorruption(bad);
        file.write(host + in, src.asSlice(0, run));
        writeBack.dataWritten(); // after completion: a flush that starts later must sync
        return run;
    }

    /** An extended-L2 claim: also the old bitmap, and whether the whole cluster is rewritten (copy of a compressed or shared one). */
    private record SubClaim(Claim c, long oldBitmap, boolean whole) {}

    /**
     * Extended L2: writes from byte {@code in} of guest cluster g into the run of subclusters that
     * are not allocated (rules R1/R12: the data first, then the entry and bitmap that expose it).
     * Only those subclusters are written: a partial subcluster is completed from what it read as
     * (zeroes or the backing file); the other subclusters of a new host cluster stay unallocated.
     * A compressed or shared cluster is copied whole into a new cluster. Returns the bytes of
     * {@code part} done, 0 when the caller must look the cluster up again.
     */
    private long allocatingSubclusterWrite(long g, int in, MemorySegment part) throws IOException {
        int idx = geo.l2Index(g);
        SubClaim sc = cache.withMeta(() -> {
            CachedTable t = tableForAllocationLocked(g);
            long old = t.entry(idx), bm = t.bitmapLocked(idx);
            reader.checkBitmap(g, old, bm);
            int type = geo.typeOf(old);
            long host;
            boolean whole = false;
            if (type == L2Entry.NORMAL && (old & L2Entry.COPIED) != 0) {
                if (L2Entry.subType(bm, geo.subOf(in)) == L2Entry.SUB_DATA) return null; // allocated meanwhile
                host = geo.hostOf(old, g);
                String bad = overlap.dataOverlapLocked(host);
                if (bad != null) throw new MetadataCorruption(bad);
            } else {
                whole = type != L2Entry.UNALLOCATED;
                host = alloc.allocClusterLocked(null); // R2: refcount raised before anything maps it
            }
            InFlight mine = new InFlight();
            inflight.put(g, mine);
            t.pins++;
            return new SubClaim(new Claim(t, old, host, host != (old & L2Entry.OFFSET_MASK), false, mine), bm, whole);
        });
        if (sc == null) return 0;
        Claim c = sc.c;
        long len = part.byteSize();
        int from, to; // the subclusters written
        if (sc.whole) {
            from = 0;
            to = L2Entry.SUBCLUSTERS;
        } else {
            from = geo.subOf(in);
            int last = geo.subOf((int) (in + len - 1)) + 1;
            to = from + 1;
            while (to < last && L2Entry.subType(sc.oldBitmap, to) != L2Entry.SUB_DATA) to++;
            len = Math.min(((long) to << geo.subclusterBits) - in, len);
        }
        int start = from << geo.subclusterBits, end = to << geo.subclusterBits;
        MemorySegment buf = null;
        try {
            MemorySegment out = part.asSlice(0, len);
            long at = c.host + in;
            if (in != start || in + len != end) {
                buf = clusterPool.acquire();
                MemorySegment region = buf.asSlice(start, end - start);
                if (sc.whole && geo.typeOf(c.old) == L2Entry.NORMAL) reader.readSubclusters(g, c.old, sc.oldBitmap, 0, buf); // shared
                else if (sc.whole) reader.oldContents(g, c.old, buf);
                else {
                    reader.readSubclusters(g, c.old, sc.oldBitmap, start, region);
                    long gEnd = (g << clusterBits) + end;
                    if (gEnd > geo.virtualSize) buf.asSlice(Math.max(start, geo.virtualSize - (g << clusterBits))).fill((byte) 0);
                }
                buf.asSlice(in, len).copyFrom(out);
                out = region;
                at = c.host + start;
            }
            file.write(at, out);
            writeBack.dataWritten();
        } catch (Throwable ex) {
            abandon(c, g);
            throw ex;
        } finally {
            if (buf != null) clusterPool.release(buf);
        }
        // R1/R12: the data is written; only now do the entry and bitmap map it.
        long bits = L2Entry.subRange(from, to);
        release(c, g, () -> {
            long cur = c.table.entry(idx);
            long curBm = sc.whole ? 0 : c.table.bitmapLocked(idx);
            writeBack.mappingChangedLocked(); // W1: before the entry
            c.table.setPair(idx, c.host | L2Entry.COPIED, (curBm | bits) & ~(bits << 32));
            if (c.fresh) alloc.queueEntryFreeLocked(cur);
        });
        return len;
    }

    /**
     * Extended L2: write-zeroes of [offset, offset+length) within one cluster (callers split at
     * cluster boundaries). Whole subclusters
     * get their zero bit (allocation bit cleared); a partial subcluster too when it is not
     * allocated and the rest of it reads as zero already, else zero bytes are written into it.
     */
    private void zeroSubclusters(long offset, long length) throws IOException {
        int scs = geo.subclusterSize;
        long end = offset + length;
        long first = (offset + scs - 1) & ~(long) (scs - 1);
        long last = end == geo.virtualSize ? end : end & ~(long) (scs - 1);
        long headEnd = Math.min(first, end);
        if (offset < headEnd) zeroPartialSubcluster(offset, headEnd - offset);
        if (first < last && !setZeroBits(first, last, false, false)) writeZeroBytes(first, last - first);
        long tailStart = Math.max(last, headEnd);
        if (tailStart < end) zeroPartialSubcluster(tailStart, end - tailStart);
    }

    /** [offset, offset+length) within one subcluster: its zero bit when the rest of it reads as zero already, else zero bytes. */
    private void zeroPartialSubcluster(long offset, long length) throws IOException {
        long s = offset & ~(long) (geo.subclusterSize - 1);
        long e = Math.min(s + geo.subclusterSize, geo.virtualSize);
        boolean belowZero = backing.mapsAsZero(s, offset - s) && backing.mapsAsZero(offset + length, e - offset - length);
        if (!setZeroBits(s, e, true, belowZero)) writeZeroBytes(offset, length);
    }

    /**
     * Extended L2: sets the zero bits of the subclusters covering guest [from, to) (one cluster).
     * With {@code partial}, only when none of them is allocated and unallocated ones read as zero
     * from below ({@code belowZero}: the backing chain says so for the bytes the request leaves).
     * False when nothing was changed (a compressed or shared cluster, or the condition failed): the
     * caller writes zero bytes instead.
     */
    private boolean setZeroBits(long from, long to, boolean partial, boolean belowZero) throws IOException {
        long g = from >>> clusterBits;
        int s0 = geo.subOf(geo.inCluster(from)), s1 = geo.subOf(geo.inCluster(to - 1)) + 1;
        long bits = L2Entry.subRange(s0, s1);
        boolean done;
        exclusive.lockShared();
        try {
            done = cache.withMeta(() -> {
                CachedTable t = tableForAllocationLocked(g);
                int idx = geo.l2Index(g);
                long e = t.entry(idx), bm = t.bitmapLocked(idx);
                reader.checkBitmap(g, e, bm);
                int type = geo.typeOf(e);
                if (type == L2Entry.COMPRESSED_CLUSTER || (type == L2Entry.NORMAL && (e & L2Entry.COPIED) == 0)) return false;
                if (partial) {
                    if ((bm & bits) != 0) return false;
                    long unalloc = bits & ~(bm >>> 32);
                    if (unalloc != 0 && !belowZero) return false;
                }
                long nbm = (bm | (bits << 32)) & ~bits;
                if (nbm != bm) {
                    writeBack.mappingChangedLocked(); // W1: before the entry
                    t.setPair(idx, e, nbm);
                }
                return true;
            });
        } catch (MetadataCorruption c) {
            throw guard.corrupted(c);
        } finally {
            exclusive.unlockShared();
        }
        if (done && writeBack.writeThrough()) writeBack.commit();
        return done;
    }

    // ---------------------------------------------------------------- compressed write

    /**
     * Stores guest cluster g, which must read as unallocated or zero without a host cluster, as
     * {@code len} bytes of compressed data (convert -c): packed into a shared host cluster by
     * {@link RefcountAllocator#allocCompressedLocked}, written before the entry maps it (R1), the
     * reference raised before that (R2). Only its own bytes are written: the entry's range runs to
     * the end of its last sector, where the next compressed cluster may start (readers stop at the
     * end of the compressed stream).
     */
    void writeCompressed(long g, byte[] data, int len) throws IOException {
        guard.checkWritable();
        guard.beforeChange();
        int idx = geo.l2Index(g);
        exclusive.lockShared();
        try {
            Claim c = cache.withMeta(() -> {
                CachedTable t = tableForAllocationLocked(g);
                long old = t.entry(idx);
                int type = geo.typeOf(old);
                if (type != L2Entry.UNALLOCATED && type != L2Entry.ZERO_PLAIN)
                    throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "compressed write to guest cluster " + g + ", which is already allocated");
                return claimLocked(g, t, old, alloc.allocCompressedLocked(len), true, false);
            });
            try (Arena a = Arena.ofConfined()) {
                MemorySegment buf = a.allocate(len, 4096);
                MemorySegment.copy(data, 0, buf, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, len);
                file.write(c.host, buf);
                writeBack.dataWritten();
            } catch (Throwable ex) {
                long first = c.host >>> clusterBits, last = (c.host + len - 1) >>> clusterBits;
                release(c, g, () -> alloc.queueFreeLocked(new HostRun(first << clusterBits, last - first + 1))); // our references, dropped after a flush
                throw ex;
            }
            // R1: the compressed data is written; only now does the entry map it.
            release(c, g, () -> {
                long cur = c.table.entry(idx);
                writeBack.mappingChangedLocked(); // W1: before the entry
                c.table.setEntry(idx, L2Entry.compressed(c.host, len, clusterBits));
                alloc.queueEntryFreeLocked(cur);
            });
        } catch (MetadataCorruption mc) {
            throw guard.corrupted(mc);
        } finally {
            exclusive.unlockShared();
        }
        writeBack.afterRequest(true, false);
    }

    // ---------------------------------------------------------------- zeroes and discard

    /** Write-zeroes or discard of a guest range (range already checked). */
    void zeroRange(long offset, long length, boolean mayUnmap, boolean discard) throws IOException {
        zeroRange(offset, length, mayUnmap, discard, false);
    }

    /**
     * Like {@link #zeroRange(long, long, boolean, boolean)}; {@code full} (with {@code discard}): the
     * clusters become unallocated even over a backing file, so they read the backing file's data
     * (qemu's full discard: emptying an overlay after commit, cutting clusters off in a shrink).
     */
    void zeroRange(long offset, long length, boolean mayUnmap, boolean discard, boolean full) throws IOException {
        guard.checkWritable();
        guard.beforeChange();
        long vsize = geo.virtualSize;
        long end = offset + length;
        long firstFull = (offset + cs - 1) & ~(long) (cs - 1);
        long lastFull = end == vsize ? end : end & ~(long) (cs - 1); // a partial last cluster at the image end counts as full
        if (firstFull >= lastFull) { // no whole cluster in it (it may straddle two)
            if (!discard) zeroPartialCluster(offset, length);
            return;
        }
        if (!discard && offset < firstFull) zeroPartialCluster(offset, firstFull - offset);
        boolean physical = geo.version < 3 && backing.present() && !discard; // v2 with a backing file: no zero flag
        if (physical) {
            for (long o = firstFull; o < lastFull; o += cs) writeZeroBytes(o, Math.min(cs, lastFull - o));
        } else {
            exclusive.lockShared();
            try {
                long endG = (lastFull + cs - 1) >>> clusterBits;
                for (long g = firstFull >>> clusterBits; g < endG; ) g = zeroClusters(g, endG, mayUnmap, discard, full);
            } catch (MetadataCorruption c) {
                throw guard.corrupted(c);
            } finally {
                exclusive.unlockShared();
            }
            if (writeBack.writeThrough()) writeBack.commit();
        }
        if (!discard && lastFull < end) zeroPartialCluster(lastFull, end - lastFull);
        writeBack.flushIfOverBudget();
    }

    /** Write-zeroes of a range with no whole cluster in it (it may straddle two): zero bytes, or with extended L2 zero subclusters. */
    private void zeroPartialCluster(long offset, long length) throws IOException {
        if (!geo.extendedL2) {
            writeZeroBytes(offset, length);
            return;
        }
        for (long o = offset, end = offset + length; o < end; ) {
            long n = Math.min(cs - (o & (cs - 1)), end - o);
            zeroSubclusters(o, n);
            o += n;
        }
    }

    /** Zeroes guest clusters [g, endG) within one L2 table; returns the next cluster to do. */
    private long zeroClusters(long g, long endG, boolean mayUnmap, boolean discard, boolean full) throws IOException {
        long stop = Math.min(endG, geo.nextL2Boundary(g));
        return cache.withMeta(() -> {
            guard.checkWritable();
            for (long c = g; c < stop; c++) {
                InFlight other = inflight.get(c);
                if (other != null) throw new MetaRetry.AwaitAllocation(other);
            }
            // Reads as zero already. (With extended L2, qemu sets the zero bits anyway: so do we, for equal maps.)
            if (map.unmappedL2(g) && (!backing.present() || geo.version < 3 || full) && (!geo.extendedL2 || discard)) return stop;
            CachedTable t = map.l2ForWriteLocked(g);
            for (long c = g; c < stop; c++) {
                int idx = geo.l2Index(c);
                long cur = t.entry(idx);
                int type = geo.typeOf(cur);
                long next;
                if (geo.extendedL2) {
                    long bm = t.bitmapLocked(idx);
                    long nextBm;
                    if (!mayUnmap && type == L2Entry.NORMAL && (cur & L2Entry.COPIED) != 0) {
                        next = cur;
                        nextBm = L2Entry.ALL_ZERO;
                    } else {
                        next = 0;
                        // Like qemu: a discarded allocated cluster reads as zero through its bitmap even without a backing file.
                        nextBm = discard && !backing.present() && type == L2Entry.UNALLOCATED ? 0 : L2Entry.ALL_ZERO;
                    }
                    if (next == cur && nextBm == bm) continue;
                    writeBack.mappingChangedLocked(); // W1: before the entry
                    t.setPair(idx, next, nextBm);
                    if (next == 0) alloc.queueEntryFreeLocked(cur); // R4: freed after the flush
                    continue;
                }
                if (geo.version >= 3) {
                    if (!mayUnmap && (type == L2Entry.NORMAL || type == L2Entry.ZERO_ALLOC) && (cur & L2Entry.COPIED) != 0)
                        next = (cur & L2Entry.OFFSET_MASK) | L2Entry.ZERO_FLAG | L2Entry.COPIED;
                    else if (discard && (!backing.present() || full)) next = 0;
                    else next = L2Entry.ZERO_FLAG;
                } else {
                    next = 0;
                }
                if (next == cur) continue;
                writeBack.mappingChangedLocked(); // W1: before the entry
                t.setEntry(idx, next);
                if ((next & L2Entry.OFFSET_MASK) == 0) alloc.queueEntryFreeLocked(cur); // R4: freed after the flush
            }
            return stop;
        });
    }

    private void writeZeroBytes(long offset, long length) throws IOException {
        for (long o = offset; o < offset + length; ) {
            long n = Math.min(cs - (o & (cs - 1)), offset + length - o);
            write(o, zeroCluster.asSlice(0, n));
            o += n;
        }
    }

    // ---------------------------------------------------------------- preallocation

    /** Maps every guest cluster to a host cluster (preallocation=metadata|falloc|full). */
    void preallocate(Preallocation mode) throws IOException {
        long clusters = geo.guestClusters();
        long maxEnd = 0;
        for (long g = 0; g < clusters; g++) {
            final long gg = g;
            long host = cache.withMeta(() -> {
                CachedTable t = map.l2ForWriteLocked(gg);
                int idx = geo.l2Index(gg);
                long cur = t.entry(idx);
                if (geo.typeOf(cur) == L2Entry.NORMAL) return cur & L2Entry.OFFSET_MASK;
                long c = alloc.allocClusterLocked(null);
                if (geo.extendedL2) t.setPair(idx, c | L2Entry.COPIED, L2Entry.ALLOC_MASK);
                else t.setEntry(idx, c | L2Entry.COPIED);
                return c;
            });
            if (mode == Preallocation.FULL) file.write(host, zeroCluster);
            maxEnd = Math.max(maxEnd, host + cs);
            writeBack.flushIfOverBudget();
        }
        if (mode == Preallocation.FALLOC) {
            // data clusters follow the metadata mostly contiguously: reserve everything up to the end
            long start = 3L * cs;
            if (maxEnd > start) file.allocate(start, maxEnd - start);
        }
        if (file.size() < maxEnd) file.truncate(maxEnd);
        writeBack.dataWritten();
        writeBack.flushFully();
    }
}
