package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import io.qblk.io.PosixFileBackend;
import io.qblk.uring.FileBackends;
import java.io.Closeable;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * An image's backing file, opened read-only when the image is opened: a qcow2 image (itself with a
 * chain, up to {@value #MAX_DEPTH} deep) or a raw file. The name is resolved against the image's
 * directory, then handed to the {@link BackingPolicy} hook, which may refuse it.
 */
final class BackingChain implements Closeable {
    static final int MAX_DEPTH = 16;
    static final BackingChain NONE = new BackingChain(null, null, 0);

    private final Qcow2Image image;
    private final IoBackend raw;
    private final long size;

    private BackingChain(Qcow2Image image, IoBackend raw, long size) {
        this.image = image;
        this.raw = raw;
        this.size = size;
    }

    /** Opens the backing file named by {@code h} (none: {@link #NONE}); {@code dir} resolves a relative name. */
    static BackingChain open(Qcow2Header h, Path dir, OpenOptions o, int depth, long cacheBudget) throws IOException {
        // NOT_OPENED (describing an image, like qemu-img info) leaves the chain closed; a writer always opens it.
        if (h.backingFile == null || (o.backingPolicy() == BackingPolicy.NOT_OPENED && o.readOnly())) return NONE;
        if (depth >= MAX_DEPTH) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "backing chain deeper than " + MAX_DEPTH + " images (a loop?)");
        Path bp = Path.of(h.backingFile);
        if (!bp.isAbsolute() && dir != null) bp = dir.resolve(bp);
        bp = o.backingPolicy().admit(h.backingFile, bp);
        if (!Files.exists(bp))
            throw new Qcow2Exception(Qcow2Exception.Kind.BACKING_MISSING, "backing file " + h.backingFile + " not found (looked at " + bp + ")");
        String fmt = h.backingFormat;
        if (fmt == null) {
            try (IoBackend probeFile = PosixFileBackend.open(bp, true)) {
                fmt = Qcow2Header.hasMagic(probeFile) ? "qcow2" : "raw";
            }
        }
        return switch (fmt) {
            case "qcow2" -> {
                Qcow2Image img = Qcow2Image.openInChain(bp, o.withReadOnly(true).withCacheBytes(Math.max(cacheBudget / 2, 8L * h.clusterSize())), depth + 1);
                yield new BackingChain(img, null, img.virtualSize());
            }
            case "raw" -> {
                IoBackend r = FileBackends.open(bp, true, o.cacheMode(), o.aio());
                yield new BackingChain(null, r, r.size());
            }
            default -> throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "unsupported backing file format " + fmt + " (only qcow2 and raw)");
        };
    }

    boolean present() { return image != null || raw != null; }

    long size() { return size; }

    /** True when guest bytes at {@code guestOffset} come from no backing file (so they read as zero). */
    boolean readsAsZero(long guestOffset) {
        return !present() || guestOffset >= size;
    }

    /** Reads guest bytes at {@code guestOffset} from the backing file; zeroes beyond its end. */
    void read(long guestOffset, MemorySegment part) throws IOException {
        long n = part.byteSize();
        if (readsAsZero(guestOffset)) {
            part.fill((byte) 0);
            return;
        }
        long m = Math.min(n, size - guestOffset);
        if (image != null) image.read(guestOffset, part.asSlice(0, m));
        else raw.read(guestOffset, part.asSlice(0, m));
        if (m < n) part.asSlice(m).fill((byte) 0);
    }

    /** True when [pos, pos+n) reads as zero through the chain (as {@link #map} tells; true for n = 0). */
    boolean mapsAsZero(long pos, long n) throws IOException {
        if (n <= 0 || readsAsZero(pos)) return true;
        for (MapEntry m : map(pos, n)) if (!m.zero()) return false;
        return true;
    }

    /** How [pos, pos+n), unallocated in the image on top, reads through the chain (depth 1 = this file). */
    List<MapEntry> map(long pos, long n) throws IOException {
        List<MapEntry> out = new ArrayList<>();
        if (!present()) {
            out.add(new MapEntry(pos, n, 0, false, true, false, -1));
            return out;
        }
        long inB = pos < size ? Math.min(n, size - pos) : 0;
        if (inB > 0) {
            if (image != null) {
                for (MapEntry m : image.map(pos, inB))
                    out.add(new MapEntry(m.start(), m.length(), m.depth() + 1, m.present(), m.zero(), m.data(), m.offset()));
            } else {
                // holes of a sparse raw file read as zeroes: reported as such (SEEK_DATA/SEEK_HOLE), as qemu does
                for (IoBackend.Extent x : raw.extents(pos, inB))
                    out.add(new MapEntry(x.offset(), x.length(), 1, true, !x.data(), x.data(), x.offset()));
            }
        }
        if (inB < n) out.add(new MapEntry(pos + inB, n - inB, 1, false, true, false, -1));
        return out;
    }

    @Override
    public void close() throws IOException {
        if (image != null) image.close();
        if (raw != null) raw.close();
    }
}
