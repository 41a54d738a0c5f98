package io.qblk.cli;

import io.qblk.io.ImageLock;
import io.qblk.qcow2.BackingPolicy;
import io.qblk.qcow2.ImageInfo;
import io.qblk.qcow2.MapEntry;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A backing chain as commit and rebase walk it: the images from FILE down, each with the path its
 * parent's header resolves to (a relative name is relative to the parent's directory, and the CLI's
 * {@link BackingPolicy#REGULAR_FILES} rule applies), read one header at a time without opening the
 * chain below.
 */
final class ImageChain {
    private ImageChain() {}

    /** One image of a chain: where it is, its format, and the name its parent's header gives it (null for FILE). */
    record Layer(Path path, ImageFormat format, String name) {}

    /** FILE and every backing file below it, top first. */
    static List<Layer> of(Path file, String format) throws IOException {
        List<Layer> out = new ArrayList<>();
        Layer l = new Layer(file, ImageFormat.resolve(format, file), null);
        while (true) {
            if (!l.format().hasFile()) throw new IllegalArgumentException(l.path() + ": not a qcow2 or raw image");
            out.add(l);
            if (out.size() > 16) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, file + ": backing chain deeper than 16 images (a loop?)");
            if (l.format() != ImageFormat.QCOW2) return out;
            ImageInfo info;
            try (Qcow2Image img = TargetOpener.openImage(l.path(), TargetOptions.defaults().withReadOnly(true).withBacking(BackingPolicy.NOT_OPENED))) {
                info = img.info();
            }
            if (info.backingFilename() == null) return out;
            Path p = resolve(l.path(), info.backingFilename());
            if (!Files.exists(p))
                throw new Qcow2Exception(Qcow2Exception.Kind.BACKING_MISSING, l.path() + ": backing file " + info.backingFilename() + " not found (looked at " + p + ")");
            ImageFormat f = info.backingFormat() != null ? ImageFormat.parse(info.backingFormat()) : ImageFormat.probe(p);
            l = new Layer(p, f, info.backingFilename());
        }
    }

    /** {@code name} as the header of {@code image} resolves it, admitted by the CLI's backing policy. */
    static Path resolve(Path image, String name) throws IOException {
        Path p = Path.of(name);
        if (!p.isAbsolute()) p = image.toAbsolutePath().getParent().resolve(p);
        return BackingPolicy.REGULAR_FILES.admit(name, p);
    }

    /** Index of {@code base} in {@code chain} (by name as written in a header, or by file identity), or -1. */
    static int indexOf(List<Layer> chain, String base, Path cwdRelative) throws IOException {
        for (int i = 1; i < chain.size(); i++) {
            Layer l = chain.get(i);
            if (base.equals(l.name())) return i;
            if (Files.exists(cwdRelative) && ImageLock.sameFile(cwdRelative, l.path())) return i;
        }
        return -1;
    }

    interface RangeSink {
        void data(long offset, MemorySegment data) throws IOException;
        void zero(long offset, long length) throws IOException;
    }

    /**
     * Calls {@code sink} for every range the qcow2 image {@code img} holds itself (not its backing
     * file): data ranges with their bytes (in chunks of at most 2 MiB), zero ranges as zero.
     */
    static void ownRanges(Qcow2Image img, RangeSink sink) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(ConvertCommand.CHUNK, 4096);
            for (MapEntry m : img.map(0, img.virtualSize())) {
                if (m.depth() != 0 || !m.present()) continue;
                if (m.zero()) {
                    sink.zero(m.start(), m.length());
                    continue;
                }
                for (long off = m.start(); off < m.start() + m.length(); off += ConvertCommand.CHUNK) {
                    MemorySegment s = buf.asSlice(0, Math.min(ConvertCommand.CHUNK, m.start() + m.length() - off));
                    img.read(off, s);
                    sink.data(off, s);
                }
            }
        }
    }

    /** Bytes the qcow2 image {@code layer} holds itself (for progress). */
    static long ownBytes(Path layer) throws IOException {
        long[] n = {0};
        try (Qcow2Image img = TargetOpener.openImage(layer, TargetOptions.defaults().withReadOnly(true).withBacking(BackingPolicy.NOT_OPENED))) {
            for (MapEntry m : img.map(0, img.virtualSize())) if (m.depth() == 0 && m.present()) n[0] += m.length();
        }
        return n[0];
    }
}
