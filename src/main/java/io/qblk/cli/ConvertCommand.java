package io.qblk.cli;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.BlockTarget;
import io.qblk.io.ImageLock;
import io.qblk.target.ImageFormat;
import io.qblk.target.Qcow2Target;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import io.qblk.util.Sizes;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk convert}: copies one or more images (concatenated) into a new qcow2 or raw image,
 * making the same choices as qemu-img convert: what the sources' allocation maps say reads as zeroes
 * is not written (a new image reads zeroes already), data is scanned for zero runs of at least the
 * {@code -S} size, which are skipped too, and with {@code -B} only what the source's top layer holds
 * is written over the new backing file.
 */
@Command(name = "convert", mixinStandardHelpOptions = true,
        description = "Copy images (concatenated) into a new qcow2 or raw image, like qemu-img convert.")
public class ConvertCommand implements Callable<Integer> {
    /** qemu-img's copy buffer: the most read and written at once. */
    static final int CHUNK = 2 << 20;
    /** qemu-img's limit on -S: 32768 sectors. */
    static final long MAX_SPARSE = 16L << 20;

    @Spec CommandSpec spec;

    @Option(names = "-f", paramLabel = "FMT", description = "format of the inputs: qcow2 or raw (probed when absent)")
    String format;

    @Option(names = "-O", paramLabel = "FMT", description = "format of OUT: raw (default, as qemu-img) or qcow2")
    String outFormat = "raw";

    @Option(names = "-o", paramLabel = "OPTIONS", description = "creation options of OUT, as for create")
    List<String> options = new ArrayList<>();

    @Option(names = "-S", paramLabel = "SIZE", description = "zero runs of at least SIZE (a multiple of 512, default 4k) in data are not written; 0 writes everything")
    String sparseText = "4k";

    @Option(names = "-B", paramLabel = "BACKING", description = "make OUT an overlay of BACKING; only what the input's top layer holds is written")
    String backing;

    @Option(names = "-F", paramLabel = "FMT", description = "format of BACKING (required with -B)")
    String backingFormat;

    @Option(names = "-n", description = "OUT exists already: do not create it")
    boolean noCreate;

    @Option(names = "-c", description = "compress OUT's clusters (qcow2; -o compression_type=zlib|zstd chooses the codec)")
    boolean compress;

    @Option(names = "-p", description = "show progress")
    boolean progress;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Mixin ForceShare share;

    @Parameters(arity = "2..*", paramLabel = "IN... OUT")
    List<Path> files;

    /** What the sources' allocation says about a run, as qemu-img convert sorts it. */
    enum Kind { DATA, ZERO, BACKING }

    @Override
    public Integer call() throws IOException {
        long sparse = Sizes.parse(sparseText);
        if (sparse % 512 != 0 || sparse > MAX_SPARSE)
            throw new IllegalArgumentException("invalid -S " + sparseText + ": a multiple of 512 up to " + MAX_SPARSE + " (0 writes everything)");
        ImageFormat outFmt = ImageFormat.parse(outFormat);
        if (!outFmt.hasFile()) throw new IllegalArgumentException("-O " + outFormat + ": convert writes a qcow2 or raw image");
        Map<String, String> opts = CreateCommand.parseOptions(String.join(",", options));
        if (compress && outFmt != ImageFormat.QCOW2) throw new IllegalArgumentException("Compression not supported for this file format");
        if (backing != null && outFmt == ImageFormat.RAW) throw new IllegalArgumentException("-B needs -O qcow2 (raw has no backing file)");
        if (backing != null && backingFormat == null) throw new IllegalArgumentException("-B needs the backing file's format (-F qcow2|raw)");
        if (backing != null && noCreate) throw new IllegalArgumentException("-B cannot be used with -n");
        if (backingFormat != null && !ImageFormat.parse(backingFormat).hasFile())
            throw new IllegalArgumentException("-F " + backingFormat + ": a backing file is qcow2 or raw");
        Path out = files.getLast();
        List<Path> inputs = files.subList(0, files.size() - 1);
        // Refused here, before anything is created or replaced (the read-write open of OUT would also
        // conflict with the input's lock, but only after OUT had been recreated).
        for (Path in : inputs)
            if (Files.exists(out) && Files.exists(in) && ImageLock.sameFile(in, out)) throw new IllegalArgumentException(out + ": output is also an input");
        // An overlay is only created over a backing file that opens: check it before OUT exists.
        if (backing != null) CreateCommand.backingSize(out, backing, backingFormat);

        List<SourceImage> sources = new ArrayList<>();
        try {
            long total = 0;
            for (Path in : inputs) {
                SourceImage s = share.run(() -> SourceImage.open(in, format));
                sources.add(s);
                total += s.size;
            }
            if (noCreate) {
                if (!Files.exists(out)) throw new java.nio.file.NoSuchFileException(out.toString());
            } else {
                create(out, outFmt, total, opts);
            }
            try (BlockTarget target = TargetOpener.open(out, TargetOptions.defaults().withFormat(outFmt))) {
                if (target.size() < total)
                    throw new IllegalArgumentException(out + ": output is " + target.size() + " bytes, smaller than the input(s) (" + total + " bytes)");
                Progress p = Progress.of(spec.commandLine().getOut(), progress && !quiet, 1.0);
                Copy copy = new Copy(sources, target, sparse / 512, backing != null, noCreate, p);
                if (compress) copy.runCompressed(((Qcow2Target) target).image());
                else copy.run();
                target.flush();
                p.finish();
            }
        } finally {
            for (SourceImage s : sources) s.close();
        }
        return 0;
    }

    private void create(Path out, ImageFormat fmt, long size, Map<String, String> opts) throws IOException {
        if (Files.isRegularFile(out)) {
            // qemu-img convert replaces OUT, but not one another process uses: its lock refuses a writer
            try (PosixFileBackend f = PosixFileBackend.open(out, false)) { }
        }
        Files.deleteIfExists(out);
        if (fmt == ImageFormat.RAW) {
            MeasureCommand.raw(size, opts);
            if (opts.containsKey("preallocation") && !opts.get("preallocation").equals("off"))
                throw new IllegalArgumentException("preallocation is not supported by convert");
            try (PosixFileBackend f = PosixFileBackend.open(out, false, true); Arena a = Arena.ofConfined()) {
                f.truncate(size);
                // qemu-img allocates the first block of a new raw file (so its alignment can be probed): same map
                if (size > 0) f.write(0, a.allocate(Math.min(4096, size), 4096));
                f.datasync();
            }
            return;
        }
        CreateOptions co = CreateCommand.qcow2Options(size, opts);
        if (backing != null) co = co.withBacking(backing, backingFormat);
        Qcow2Image.create(out, co);
    }

    /** One copy pass over the concatenated sources into the target. */
    static final class Copy {
        private final List<SourceImage> sources;
        private final BlockTarget target;
        private final long minSparse; // sectors; 0 = write everything
        private final boolean targetHasBacking;
        private final boolean zeroInit;
        private final Progress progress;

        Copy(List<SourceImage> sources, BlockTarget target, long minSparseSectors, boolean targetHasBacking, boolean existing,
             Progress progress) {
            this.sources = sources;
            this.target = target;
            this.minSparse = minSparseSectors;
            this.targetHasBacking = targetHasBacking;
            // A new image without backing reads zeroes; an existing one is made to (below), as qemu-img does.
            this.zeroInit = !targetHasBacking;
            this.progress = progress;
            this.existing = existing;
        }

        private final boolean existing;

        void run() throws IOException {
            if (existing && !targetHasBacking) makeZero();
            progress.start();
            // Progress counts the bytes that are read and written, like qemu-img's (a first pass over the maps).
            long toCopy = 0, copied = 0;
            for (SourceImage src : sources) {
                long n;
                for (long off = 0; off < src.size; off += n) {
                    SourceImage.Status s = src.status(off, src.size);
                    n = s.length();
                    if (kindAt(s) == Kind.DATA) toCopy += n;
                }
            }
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment buf = arena.allocate(CHUNK, 4096);
                long base = 0;
                for (SourceImage src : sources) {
                    long n;
                    for (long off = 0; off < src.size; off += n) {
                        SourceImage.Status s = src.status(off, src.size);
                        Kind kind = kindAt(s);
                        n = s.length();
                        if (kind == Kind.DATA) n = Math.min(n, CHUNK);
                        switch (kind) {
                            case BACKING -> { }
                            case ZERO -> { if (!zeroInit) target.writeZeroes(base + off, n, true); }
                            case DATA -> {
                                MemorySegment b = buf.asSlice(0, n);
                                src.read(off, b);
                                writeData(base + off, b);
                                copied += n;
                                progress.set(100.0 * copied / toCopy);
                            }
                        }
                    }
                    base += src.size;
                }
            }
        }

        /**
         * convert -c: cluster by cluster, as qemu-img does: a cluster that holds any data (by the
         * sources' maps) is read whole and written compressed (uncompressed when that does not save
         * a sector, and not at all when it is all zeroes and the target reads zeroes already); the
         * others are skipped or zeroed like in {@link #run}.
         */
        void runCompressed(Qcow2Image image) throws IOException {
            if (existing && !targetHasBacking) makeZero();
            progress.start();
            long total = 0;
            for (SourceImage src : sources) total += src.size;
            int cs = image.clusterSize();
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment buf = arena.allocate(cs, 4096);
                for (long off = 0; off < total; off += cs) {
                    long n = Math.min(cs, total - off);
                    if (parts(off, n, false)) {
                        MemorySegment b = buf.asSlice(0, n);
                        readConcatenated(off, b);
                        if (!(zeroInit && SourceImage.isZero(b, 0, n))) image.writeCompressed(off, b);
                    } else if (!zeroInit) {
                        parts(off, n, true);
                    }
                    progress.set(100.0 * (off + n) / total);
                }
            }
        }

        /**
         * Walks the sources' map over the concatenated range: returns true as soon as a part holds
         * data; with {@code zeroParts}, writes zeroes over the parts that read as zero (the range
         * holds no data then, and what is left to the backing file stays untouched).
         */
        private boolean parts(long off, long n, boolean zeroParts) throws IOException {
            long base = 0;
            for (SourceImage src : sources) {
                long from = Math.max(off, base), to = Math.min(off + n, base + src.size);
                for (long p = from; p < to; ) {
                    SourceImage.Status s = src.status(p - base, to - base);
                    Kind k = kindAt(s);
                    if (k == Kind.DATA) return true;
                    if (zeroParts && k == Kind.ZERO) target.writeZeroes(p, s.length(), true);
                    p += s.length();
                }
                base += src.size;
            }
            return false;
        }

        private void readConcatenated(long off, MemorySegment dst) throws IOException {
            long base = 0;
            for (SourceImage src : sources) {
                long from = Math.max(off, base), to = Math.min(off + dst.byteSize(), base + src.size);
                if (from < to) src.read(from - base, dst.asSlice(from - off, to - from));
                base += src.size;
            }
        }

        /** An existing target is zeroed first (space released where it can), so zero runs can be skipped. */
        private void makeZero() throws IOException {
            for (BlockTarget.Extent e : extents(target)) {
                if (!e.zero()) target.writeZeroes(e.offset(), e.length(), true);
            }
        }

        private static List<BlockTarget.Extent> extents(BlockTarget t) throws IOException {
            List<BlockTarget.Extent> all = new ArrayList<>();
            for (long off = 0; off < t.size(); ) {
                List<BlockTarget.Extent> part = t.blockStatus(off, t.size() - off);
                all.addAll(part);
                off = part.getLast().offset() + part.getLast().length();
            }
            return all;
        }

        private Kind kindAt(SourceImage.Status s) {
            Kind k = kindOf(s);
            return minSparse == 0 && k == Kind.ZERO ? Kind.DATA : k; // -S 0: fully allocate
        }

        private Kind kindOf(SourceImage.Status s) {
            if (targetHasBacking) {
                // Only the source's own layer: what it leaves unallocated stays the new backing file's.
                if (!s.topLayer()) return s.chained() ? Kind.BACKING : Kind.ZERO;
                return s.has(SourceImage.ZERO) ? Kind.ZERO : Kind.DATA;
            }
            if (s.has(SourceImage.ZERO)) return Kind.ZERO;
            return Kind.DATA;
        }

        /** Writes {@code buf} at {@code off} except zero runs of at least minSparse sectors (qemu-img's rule). */
        private void writeData(long off, MemorySegment buf) throws IOException {
            if (minSparse == 0) {
                target.write(off, buf, false);
                return;
            }
            long sectors = (buf.byteSize() + 511) / 512;
            long done = 0;
            while (done < sectors) {
                long[] run = allocatedRun(buf, done, sectors - done, off / 512 + done);
                long bytesFrom = done * 512, bytes = Math.min(run[0] * 512, buf.byteSize() - bytesFrom);
                if (run[1] == 1) target.write(off + bytesFrom, buf.asSlice(bytesFrom, bytes), false);
                else if (!zeroInit) target.writeZeroes(off + bytesFrom, bytes, true);
                done += run[0];
            }
        }

        /**
         * {count, allocated}: like qemu-img's is_allocated_sectors_min. A run starting with data
         * swallows zero runs shorter than minSparse; run ends are aligned to the sparse size.
         */
        long[] allocatedRun(MemorySegment buf, long first, long n, long sectorNum) {
            long min = Math.min(minSparse, n);
            long alignment = Long.highestOneBit(minSparse);
            long[] r = sameRun(buf, first, n, sectorNum, alignment);
            if (r[1] == 0) return r;
            long used = r[0], checked = r[0];
            long pos = first + r[0], left = n - r[0], sector = sectorNum + r[0];
            while (left > 0) {
                long[] q = sameRun(buf, pos, left, sector, alignment);
                pos += q[0];
                left -= q[0];
                sector += q[0];
                checked += q[0];
                if (q[1] == 1) used = checked;
                else if (q[0] >= min) break;
            }
            return new long[] {used, 1};
        }

        /** {count, allocated}: qemu-img's is_allocated_sectors, sectors of one kind, ends aligned. */
        static long[] sameRun(MemorySegment buf, long first, long n, long sectorNum, long alignment) {
            boolean zero = sectorZero(buf, first);
            long i = 1;
            while (i < n && sectorZero(buf, first + i) == zero) i++;
            if (i == n) return new long[] {i, zero ? 0 : 1};
            long tail = (sectorNum + i) & (alignment - 1);
            if (tail != 0) {
                if (zero && i <= tail) zero = false; // a short zero tail counts as data
                if (!zero) i = Math.min(i + alignment - tail, n);
                else i -= tail;
            }
            return new long[] {i, zero ? 0 : 1};
        }

        private static boolean sectorZero(MemorySegment buf, long sector) {
            long from = sector * 512;
            return SourceImage.isZero(buf, from, Math.min(512, buf.byteSize() - from));
        }
    }
}
