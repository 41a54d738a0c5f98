package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The read path: guest range → L2 entries (lock-free lookups) → host reads, coalescing runs of
 * contiguous host clusters; zero clusters read as zeroes, unallocated ones from the backing chain,
 * compressed ones decompressed ({@link CompressionType}). Rule R5: each lookup and the read that uses it run inside one
 * {@link IoEpochs} section, so a cluster freed meanwhile is not reused before the read has left.
 */
final class ClusterReader {
    private final IoBackend file;
    private final String filename;
    private final Geometry geo;
    private final ClusterMap map;
    private final BackingChain backing;
    private final IoEpochs epochs;
    private final BufferPool clusterPool;
    private final CompressionType compression;
    private final int cs, clusterBits;

    ClusterReader(IoBackend file, String filename, Geometry geo, ClusterMap map, BackingChain backing, IoEpochs epochs, BufferPool clusterPool,
            CompressionType compression) {
        this.compression = compression;
        this.file = file;
        this.filename = filename;
        this.geo = geo;
        this.map = map;
        this.backing = backing;
        this.epochs = epochs;
        this.clusterPool = clusterPool;
        this.cs = geo.clusterSize;
        this.clusterBits = geo.clusterBits;
    }

    /** Reads guest bytes at {@code offset} into {@code dst} (range already checked). */
    void read(long offset, MemorySegment dst) throws IOException {
        long len = dst.byteSize();
        int slot = epochs.enter();
        try {
            long pos = 0;
            while (pos < len) {
                long gOff = offset + pos;
                long g = gOff >>> clusterBits;
                int in = (int) (gOff & (cs - 1));
                long n = Math.min(cs - in, len - pos);
                if (geo.extendedL2) {
                    pos += readExtended(g, in, n, len - pos, dst.asSlice(pos));
                    continue;
                }
                long e = map.lookup(g);
                int type = geo.typeOf(e);
                if (type == L2Entry.NORMAL) {
                    long host = geo.hostOf(e, g);
                    long run = map.contiguousRun(g, host, n, len - pos, false);
                    file.read(host + in, run == len ? dst : dst.asSlice(pos, run)); // the whole request: no slice
                    pos += run;
                    continue;
                }
                MemorySegment part = dst.asSlice(pos, n);
                switch (type) {
                    case L2Entry.UNALLOCATED -> backing.read(gOff, part);
                    case L2Entry.COMPRESSED_CLUSTER -> readCompressed(e, in, part);
                    default -> part.fill((byte) 0);
                }
                pos += n;
            }
        } finally {
            epochs.exit(slot);
        }
    }

    /**
     * Fills {@code plan} when the read of {@code dst} at guest {@code offset} is one plain read of the
     * file: standard L2, a run of contiguous host clusters mapped NORMAL covering the whole request,
     * and a backend that reads it through a descriptor ({@link IoBackend#plainFd}). The lookup happens
     * inside an {@link IoEpochs} section that stays entered until the plan is released (R5 as in
     * {@link #read}): the returned token holds the epoch slot and stripe in its low 16 bits.
     * Returns -1 (nothing held) when the request needs {@link #read}.
     */
    long planRead(long offset, MemorySegment dst, io.qblk.io.FilePlan plan, io.qblk.io.FilePlan.Holder holder, long heldToken) throws IOException {
        if (geo.extendedL2) return -1;
        long len = dst.byteSize();
        long g = offset >>> clusterBits;
        int in = (int) (offset & (cs - 1));
        int stripe = IoEpochs.stripe();
        int slot = epochs.enter(stripe);
        boolean planned = false;
        try {
            long e = map.lookup(g);
            if (geo.typeOf(e) != L2Entry.NORMAL) return -1;
            long host = geo.hostOf(e, g);
            if (map.contiguousRun(g, host, Math.min(cs - in, len), len, false) != len) return -1;
            int fd = file.plainFd(host + in, dst);
            if (fd < 0) return -1;
            long token = IoEpochs.plannedToken(heldToken, stripe, slot);
            plan.set(file, fd, host + in, holder, token);
            planned = true;
            return token;
        } finally {
            if (!planned) epochs.exit(slot, stripe);
        }
    }

    /** Leaves the epoch section of a plan's token (low 16 bits; see {@link #planRead}). */
    void releasePlan(long token) {
        epochs.exitPlanned(token);
    }

    /**
     * Extended L2: reads from byte {@code in} of guest cluster g the first run of subclusters that
     * read alike (at most {@code n} bytes, the rest of the cluster's part of the request; a run of
     * allocated subclusters to the cluster end continues into contiguous fully allocated clusters,
     * at most {@code remaining} bytes). Returns the bytes read.
     */
    private long readExtended(long g, int in, long n, long remaining, MemorySegment dst) throws IOException {
        L2Entry.Pair p = map.lookupPair(g);
        long e = p.entry(), bm = p.bitmap();
        checkBitmap(g, e, bm);
        if (geo.typeOf(e) == L2Entry.COMPRESSED_CLUSTER) {
            readCompressed(e, in, dst.asSlice(0, n));
            return n;
        }
        int s = geo.subOf(in);
        int run = L2Entry.subRun(bm, s, geo.subOf((int) (in + n - 1)) + 1);
        long bytes = Math.min(((long) (s + run) << geo.subclusterBits) - in, n);
        if (L2Entry.subType(bm, s) == L2Entry.SUB_DATA && in + bytes == cs) {
            long host = geo.hostOf(e, g);
            long r = map.contiguousRun(g, host, bytes, remaining, false);
            file.read(host + in, dst.asSlice(0, r));
            return r;
        }
        readSubclusters(g, e, bm, in, dst.asSlice(0, bytes));
        return bytes;
    }

    /** Extended L2: refuses an entry whose subcluster bitmap is impossible (corruption). */
    void checkBitmap(long g, long e, long bm) throws MetadataCorruption {
        String bad = L2Entry.badBitmap(e, bm);
        if (bad != null) throw new MetadataCorruption("L2 entry for guest offset " + (g << clusterBits) + ": " + bad);
    }

    /** Extended L2: bytes [in, in + part size) of guest cluster g with a standard entry e and bitmap bm, subcluster by subcluster. */
    void readSubclusters(long g, long e, long bm, int in, MemorySegment part) throws IOException {
        long len = part.byteSize();
        long pos = 0;
        while (pos < len) {
            int at = (int) (in + pos);
            int s = geo.subOf(at);
            int run = L2Entry.subRun(bm, s, L2Entry.SUBCLUSTERS);
            long bytes = Math.min(((long) (s + run) << geo.subclusterBits) - at, len - pos);
            MemorySegment piece = part.asSlice(pos, bytes);
            switch (L2Entry.subType(bm, s)) {
                case L2Entry.SUB_DATA -> file.read(geo.hostOf(e, g) + at, piece);
                case L2Entry.SUB_UNALLOCATED -> backing.read((g << clusterBits) + at, piece);
                default -> piece.fill((byte) 0);
            }
            pos += bytes;
        }
    }

    private void readCompressed(long e, int in, MemorySegment part) throws IOException {
        MemorySegment full = clusterPool.acquire();
        try {
            decompress(e, full);
            part.copyFrom(full.asSlice(in, part.byteSize()));
        } finally {
            clusterPool.release(full);
        }
    }

    private void decompress(long e, MemorySegment out) throws IOException {
        HostRange r = geo.compressedRange(e);
        if (r.length() > 2L * cs + 1024 || r.offset() + r.length() > Qcow2Header.MAX_HOST_OFFSET)
            throw new MetadataCorruption("compressed cluster at " + r.offset() + " has an impossible size " + r.length());
        int n = (int) r.length();
        byte[] raw = new byte[n], plain = new byte[(int) out.byteSize()];
        try (Arena a = Arena.ofConfined()) {
            MemorySegment in = a.allocate(n, 4096);
            file.read(r.offset(), in); // past the end of the file reads zeroes: not part of the stream
            MemorySegment.copy(in, ValueLayout.JAVA_BYTE, 0, raw, 0, n);
        }
        compression.decompress(raw, n, plain, filename + ": compressed cluster at " + r.offset());
        MemorySegment.copy(plain, 0, out, ValueLayout.JAVA_BYTE, 0, plain.length);
    }

    /** True when {@link #oldContents} would produce only zeroes for guest cluster g with entry {@code old}. */
    boolean oldReadsAsZero(long g, long old) {
        if (geo.extendedL2) return false; // extended L2 copies on write per subcluster (ClusterWriter)
        return switch (geo.typeOf(old)) {
            case L2Entry.UNALLOCATED -> backing.readsAsZero(g << clusterBits);
            case L2Entry.ZERO_PLAIN, L2Entry.ZERO_ALLOC -> true;
            default -> false;
        };
    }

    /** What guest cluster g with entry {@code old} reads as, whole cluster (copy-on-write source). */
    void oldContents(long g, long old, MemorySegment buf) throws IOException {
        switch (geo.typeOf(old)) {
            case L2Entry.UNALLOCATED -> backing.read(g << clusterBits, buf);
            case L2Entry.NORMAL -> file.read(geo.hostOf(old, g), buf); // shared cluster: copy on write
            case L2Entry.COMPRESSED_CLUSTER -> decompress(old, buf);
            default -> buf.fill((byte) 0);
        }
        long gOff = g << clusterBits;
        if (gOff + cs > geo.virtualSize) buf.asSlice(geo.virtualSize - gOff).fill((byte) 0);
    }
}
