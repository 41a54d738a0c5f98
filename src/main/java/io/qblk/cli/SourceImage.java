package io.qblk.cli;

import io.qblk.qcow2.MapEntry;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.target.BlockTarget;
import io.qblk.target.ImageFormat;
import io.qblk.target.Qcow2Target;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.Closeable;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.List;

/**
 * An image opened read-only through {@link TargetOpener} for the qemu-img-shaped tools that walk a
 * whole image (compare, convert, measure), answering "what is at this offset" with qemu's block
 * status flags, so their decisions (skip, read, compare, write zeroes) are the ones qemu-img makes.
 *
 * <p>A qcow2 image's runs come from the engine's map and end at L2 table boundaries, as qemu's do; a
 * raw file's from SEEK_DATA/SEEK_HOLE. {@link #EOF} is set on a run that reaches the end of the image.
 */
final class SourceImage implements Closeable {
    /** qemu's BDRV_BLOCK_* bits (the values do not matter, only that equal states compare equal). */
    static final int DATA = 0x01, ZERO = 0x02, OFFSET_VALID = 0x04, ALLOCATED = 0x10, EOF = 0x20;

    /**
     * A run of bytes with one status.
     *
     * @param flags    {@link #DATA}, {@link #ZERO}, {@link #OFFSET_VALID}, {@link #ALLOCATED}, {@link #EOF}
     * @param topLayer allocated in this image itself (not only somewhere down its backing chain)
     * @param chained  the image has a backing file that answers for this run (it is not allocated on top)
     */
    record Status(long offset, long length, int flags, boolean topLayer, boolean chained) {
        boolean has(int flag) { return (flags & flag) != 0; }
        long end() { return offset + length; }
    }

    final Path path;
    final ImageFormat format;
    final BlockTarget target;
    final long size;
    private final long window;
    private List<MapEntry> cached = List.of();
    private long cachedStart = -1, cachedEnd = -1;
    private List<long[]> rawData;

    private SourceImage(Path path, ImageFormat format, BlockTarget target) {
        this.path = path;
        this.format = format;
        this.target = target;
        this.size = target.size();
        if (target instanceof Qcow2Target q) {
            long cs = q.image().clusterSize();
            this.window = cs * (cs / 8); // the guest bytes one L2 table maps
        } else {
            this.window = Long.MAX_VALUE;
        }
    }

    /** Opens {@code path} read-only as {@code format} (qcow2, raw; null probes), naming the file in any error. */
    static SourceImage open(Path path, String format) throws IOException {
        ImageFormat f = ImageFormat.resolve(format, path);
        if (!f.hasFile()) throw new IllegalArgumentException("unknown format '" + format + "' (qcow2 or raw)");
        try {
            return new SourceImage(path, f, TargetOpener.open(path, TargetOptions.defaults().withFormat(f).withReadOnly(true)));
        } catch (Qcow2Exception e) {
            String m = CliErrors.message(e);
            throw new IOException(m.startsWith(path.toString()) ? m : path + ": " + m, e);
        }
    }

    /** The run of one status starting at {@code offset} (below {@link #size}), at most up to {@code limit}. */
    Status status(long offset, long limit) throws IOException {
        if (offset < 0 || offset >= size) throw new IllegalArgumentException("offset " + offset + " outside the image");
        Status s = target instanceof Qcow2Target ? qcow2Status(offset) : rawStatus(offset);
        long end = Math.min(s.end(), Math.min(limit, size));
        int flags = s.flags() & ~EOF;
        if (s.end() >= size && end == size) flags |= EOF;
        return new Status(offset, end - offset, flags, s.topLayer(), s.chained());
    }

    private Status qcow2Status(long offset) throws IOException {
        if (offset < cachedStart || offset >= cachedEnd) {
            cachedStart = window == Long.MAX_VALUE ? 0 : offset / window * window;
            cachedEnd = Math.min(size, cachedStart + window < 0 ? size : cachedStart + window);
            cached = ((Qcow2Target) target).image().map(cachedStart, cachedEnd - cachedStart);
        }
        for (MapEntry m : cached) {
            if (m.start() + m.length() <= offset) continue;
            int flags = (m.present() ? ALLOCATED : 0) | (m.zero() ? ZERO : 0) | (m.data() ? DATA : 0) | (m.offset() >= 0 ? OFFSET_VALID : 0);
            long end = m.start() + m.length();
            Layer layer = m.data() && !m.zero() && m.offset() >= 0 ? layer(m.depth()) : null;
            if (layer != null && layer.metadataPreallocated()) {
                // as qemu: the data clusters of such an image (any layer of the chain, each judged on its
                // own) are looked up in its file, holes read as zeroes
                long host = m.offset() + (offset - m.start());
                long[] ext = layer.fileExtent(host);
                if (ext[1] == 0) flags |= ZERO;
                long room = ext[0] - host;
                if (room < end - offset) end = offset + room;
            }
            return new Status(offset, end - offset, flags, m.present() && m.depth() == 0, m.depth() > 0);
        }
        throw new IllegalStateException("map of " + path + " does not cover offset " + offset);
    }

    /** The qcow2 layers of the chain met so far, by depth (0: this image); null where not (yet) looked at. */
    private final List<Layer> layers = new java.util.ArrayList<>();
    private List<ImageChain.Layer> chain;

    /**
     * The qcow2 image at {@code depth} of the chain (0: this one), null for a raw layer: a raw backing
     * file's holes already map as zeroes ({@code Qcow2Image.map}), as qemu's file-posix reports them.
     */
    private Layer layer(int depth) throws IOException {
        while (layers.size() <= depth) layers.add(null);
        if (layers.get(depth) == null) {
            if (depth == 0) {
                layers.set(0, new Layer(path, ((Qcow2Target) target).image()));
            } else {
                if (chain == null) chain = ImageChain.of(path, format.id());
                if (depth >= chain.size() || chain.get(depth).format() != ImageFormat.QCOW2) return null;
                Path p = chain.get(depth).path();
                try (var img = TargetOpener.openImage(p, TargetOptions.defaults().withReadOnly(true).withBacking(io.qblk.qcow2.BackingPolicy.NOT_OPENED))) {
                    Layer l = new Layer(p, img);
                    layers.set(depth, l);
                }
            }
        }
        return layers.get(depth);
    }

    /**
     * One qcow2 file of the chain and qemu's guess whether it "looks metadata-preallocated": more
     * clusters in use (by its refcounts) than its allocated blocks hold, by a margin (at least 10% and
     * 2 clusters). Then qemu asks the file system about each of its data clusters and counts holes as
     * zeroes. qemu judges each layer of a chain on its own (its block status recurses into that
     * layer's file), so the guess is made per file.
     */
    private static final class Layer {
        final Path path;
        private final boolean preallocated;
        private List<long[]> dataRanges;

        Layer(Path path, io.qblk.qcow2.Qcow2Image img) throws IOException {
            this.path = path;
            long cs = img.clusterSize();
            long realClusters = FileStat.allocatedBytes(path) / cs;
            long threshold = Math.max(realClusters * 10 / 9, realClusters + 2);
            this.preallocated = img.usedClusters(threshold) >= threshold;
        }

        boolean metadataPreallocated() { return preallocated; }

        long[] fileExtent(long host) throws IOException {
            if (dataRanges == null) dataRanges = FileStat.dataRanges(path);
            return SourceImage.fileExtent(dataRanges, host);
        }
    }

    /** The extent of a file (its data ranges) holding host offset {@code host}: {end, 1} inside data, {end, 0} inside a hole. */
    private static long[] fileExtent(List<long[]> dataRanges, long host) {
        long holeEnd = Long.MAX_VALUE;
        for (long[] d : dataRanges) {
            if (d[1] <= host) continue;
            if (d[0] <= host) return new long[] {d[1], 1};
            holeEnd = d[0];
            break;
        }
        return new long[] {holeEnd, 0};
    }

    private Status rawStatus(long offset) throws IOException {
        if (rawData == null) rawData = FileStat.dataRanges(path);
        long[] ext = fileExtent(rawData, offset);
        if (ext[1] == 1) return new Status(offset, ext[0] - offset, DATA | OFFSET_VALID | ALLOCATED, true, false);
        return new Status(offset, Math.min(ext[0], size) - offset, ZERO | OFFSET_VALID | ALLOCATED, true, false);
    }

    void read(long offset, MemorySegment dst) throws IOException {
        target.read(offset, dst);
    }

    @Override
    public void close() throws IOException {
        target.close();
    }

    /** Offset (relative, a multiple of 512) of the first sector of {@code buf[0, len)} holding a non-zero byte; -1 if all zero. */
    static long firstNonZeroSector(MemorySegment buf, long len) {
        for (long pos = 0; pos < len; pos += ZEROES.byteSize()) {
            long n = Math.min(ZEROES.byteSize(), len - pos);
            long m = MemorySegment.mismatch(buf, pos, pos + n, ZEROES, 0, n);
            if (m >= 0) return (pos + m) / 512 * 512;
        }
        return -1;
    }

    /** Whether {@code buf[from, from + len)} is all zeroes. */
    static boolean isZero(MemorySegment buf, long from, long len) {
        return firstNonZeroSector(buf.asSlice(from, len), len) < 0;
    }

    /** Offset (relative, sector-aligned down) of the first differing byte of a and b over len bytes; -1 if equal. */
    static long firstDifferentSector(MemorySegment a, MemorySegment b, long len) {
        long m = MemorySegment.mismatch(a, 0, len, b, 0, len);
        return m < 0 ? -1 : m / 512 * 512;
    }

    private static final MemorySegment ZEROES = MemorySegment.ofArray(new byte[1 << 16]);
}
