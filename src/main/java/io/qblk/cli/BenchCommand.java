package io.qblk.cli;

import io.qblk.util.Sizes;
import io.qblk.io.AioMode;
import io.qblk.io.CacheMode;
import io.qblk.qcow2.MetadataWrite;
import io.qblk.target.BlockTarget;
import io.qblk.target.ImageFormat;
import io.qblk.target.Qcow2Target;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk bench}: the request stream of {@code qemu-img bench} (COUNT requests of SIZE bytes, DEPTH in
 * flight, offsets OFFSET, OFFSET+STEP, ... modulo the image size) issued by DEPTH virtual threads
 * straight into the engine.
 */
@Command(name = "bench", mixinStandardHelpOptions = true, description = "Measure the engine with a qemu-img bench style request stream.")
public class BenchCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "-c", paramLabel = "COUNT", description = "number of requests (default 75000)")
    long count = 75000;

    @Option(names = "-d", paramLabel = "DEPTH", description = "requests in flight = virtual threads (default 64)")
    int depth = 64;

    @Option(names = "-s", paramLabel = "SIZE", description = "bytes per request (default 4k)")
    String sizeText = "4k";

    @Option(names = "-S", paramLabel = "STEP", description = "offset increment (default: SIZE)")
    String stepText;

    @Option(names = "-o", paramLabel = "OFFSET", description = "first offset (default 0)")
    String offsetText = "0";

    @Option(names = "-w", description = "write instead of read")
    boolean write;

    @Option(names = "--pattern", paramLabel = "N", description = "byte written by -w (default 0)")
    int pattern;

    @Option(names = "--random", description = "uniformly random SIZE-aligned offsets instead of OFFSET+i*STEP")
    boolean random;

    @Option(names = "--seed", paramLabel = "N", description = "seed for --random (default 1)")
    long seed = 1;

    @Option(names = "--warmup", paramLabel = "N", description = "before the timed run, N writes then N reads on a "
            + "scratch image of the same format next to FILE (JIT warm-up; not timed, FILE untouched; default 0)")
    long warmup;

    @Option(names = "-f", paramLabel = "FMT", description = "qcow2 or raw (probed when absent)")
    String format;

    @Option(names = "-t", paramLabel = "CACHE", description = "none (O_DIRECT for 4 KiB-aligned requests) or "
            + "writeback (page cache); default writeback, as qemu-img bench")
    String cacheText = "writeback";

    @Option(names = "-i", paramLabel = "AIO", description = "posix (blocking pread/pwrite; alias threads) or "
            + "io_uring (a ring thread per file); default posix")
    String aioText = "posix";

    @Option(names = "--metadata", paramLabel = "MODE", description = "qcow2 metadata: writeback (default; cached until "
            + "a flush) or writethrough (what ublk devices use: a request that allocates waits for a shared flush)")
    String metadataText = "writeback";

    @Option(names = "-q", description = "quiet: only the result lines")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    @Override
    public Integer call() throws Exception {
        long size = Sizes.parse(sizeText);
        long step = stepText == null ? size : Sizes.parse(stepText);
        long offset0 = Sizes.parse(offsetText);
        if (count < 1) throw new IllegalArgumentException("-c must be at least 1");
        if (depth < 1 || depth > 4096) throw new IllegalArgumentException("-d must be between 1 and 4096");
        if (size < 1 || size > (64 << 20)) throw new IllegalArgumentException("-s must be between 1 and 64M");
        if (pattern < 0 || pattern > 255) throw new IllegalArgumentException("--pattern must be 0..255");
        CacheMode cache = CacheMode.parse(cacheText);
        AioMode aio = AioMode.parse(aioText);
        MetadataWrite metadata = MetadataWrite.parse(metadataText);
        PrintWriter out = spec.commandLine().getOut();
        ImageFormat fmt = ImageFormat.resolve(format, file);
        try (BlockTarget img = TargetOpener.open(file, options(fmt, !write, cache, aio, metadata))) {
            long imageSize = img.size();
            if (imageSize < size) throw new IllegalArgumentException("image is smaller than one request");
            if (offset0 + size > imageSize) throw new IllegalArgumentException("-o is past the end of the image");
            if (!quiet) {
                out.println(String.format("Sending %d %s requests, %d bytes each, %d in parallel (starting at offset %d, step size %d)",
                        count, write ? "write" : "read", size, depth, offset0, random ? 0 : step)
                        + (random ? " [random offsets, seed " + seed + "]" : ""));
                String why = img.directDisabledReason();
                if (why != null) out.println("Note: -t none requested, but every request is buffered: " + why);
                out.flush();
            }
            if (warmup > 0) warmUp(fmt, img, size, cache, aio, metadata);
            long[] offsets = offsets(count, offset0, step, size, imageSize, random, seed);
            double secs = run(img, offsets, size, write, depth, (byte) pattern);
            out.println(String.format(Locale.ROOT, "Run completed in %.3f seconds.", secs));
            out.println(String.format(Locale.ROOT, "IOPS: %.0f, bandwidth: %.2f MiB/s", count / secs,
                    count * (double) size / secs / (1 << 20)));
            if (!quiet && img instanceof io.qblk.target.Qcow2Target q) {
                out.println("qcow2: " + q.image().stats().summary());
            }
        }
        return 0;
    }

    /** Request indices a worker takes from the shared counter at once. */
    static final int CLAIM = 8;

    /** Issues every offset once with {@code depth} virtual threads; returns the seconds from start to last completion. */
    static double run(BlockTarget img, long[] offsets, long size, boolean write, int depth, byte pattern) throws IOException {
        AtomicLong next = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> threads = new ArrayList<>(depth);
        long t0 = System.nanoTime();
        for (int d = 0; d < depth; d++) {
            threads.add(Thread.ofVirtual().name("bench-" + d).start(() -> {
                try (Arena a = Arena.ofConfined()) {
                    MemorySegment buf = a.allocate(size, 4096);
                    if (write) buf.fill(pattern);
                    // Claim request indices CLAIM at a time: one shared counter update per request
                    // would bounce its cache line between the CPUs on every request, a harness cost
                    // qemu-img bench (one thread) does not have. Requests still start in index order
                    // within each claim, and every offset is issued exactly once.
                    long i;
                    while (failure.get() == null && (i = next.getAndAdd(CLAIM)) < offsets.length) {
                        long end = Math.min(i + CLAIM, offsets.length);
                        for (; i < end; i++) {
                            if (write) img.write(offsets[(int) i], buf, false);
                            else img.read(offsets[(int) i], buf);
                        }
                    }
                } catch (Throwable t) {
                    failure.compareAndSet(null, t);
                }
            }));
        }
        try {
            for (Thread t : threads) t.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        Throwable f = failure.get();
        if (f != null) throw f instanceof IOException io ? io : new IOException("request failed: " + CliErrors.message(f), f);
        return secs;
    }

    /** JIT warm-up on a 128 MiB scratch image of the same format (and qcow2 options) beside the measured one. */
    private void warmUp(ImageFormat fmt, BlockTarget measured, long size, CacheMode cache, AioMode aio,
                        MetadataWrite metadata) throws IOException {
        long scratchSize = Math.max(2, (128L << 20) / size) * size;
        scratchSize = (scratchSize + 511) / 512 * 512;
        Path dir = file.toAbsolutePath().getParent();
        Path scratch = java.nio.file.Files.createTempFile(dir, ".qblk-bench-warmup-", "." + fmt.id());
        try {
            java.nio.file.Files.delete(scratch);
            if (fmt == ImageFormat.QCOW2 && measured instanceof Qcow2Target q) {
                io.qblk.qcow2.ImageInfo info = q.image().info();
                io.qblk.qcow2.Qcow2Image.create(scratch, io.qblk.qcow2.CreateOptions.defaults(scratchSize)
                        .withCompat(info.compat()).withClusterSize(info.clusterSize())
                        .withRefcountBits(info.refcountBits()).withLazyRefcounts(info.lazyRefcounts()));
            } else {
                try (var f = io.qblk.io.PosixFileBackend.open(scratch, false, true)) {
                    f.truncate(scratchSize);
                }
            }
            // Writes cover the first half of the scratch image, reads all of it: on qcow2 the reads
            // then warm up both paths, allocated clusters and unallocated ones (an empty image's reads).
            long half = Math.max(size, scratchSize / 2 / size * size);
            long[] writes = offsets(warmup, 0, size, size, half, false, 0);
            long[] reads = offsets(warmup, 0, size, size, scratchSize / size * size, false, 0);
            try (BlockTarget img = TargetOpener.open(scratch, options(fmt, false, cache, aio, metadata))) {
                run(img, writes, size, true, depth, (byte) 1);
                run(img, reads, size, false, depth, (byte) 1);
            }
        } finally {
            java.nio.file.Files.deleteIfExists(scratch);
        }
    }

    private static TargetOptions options(ImageFormat fmt, boolean readOnly, CacheMode cache, AioMode aio, MetadataWrite metadata) {
        return TargetOptions.defaults().withFormat(fmt).withReadOnly(readOnly).withCache(cache).withAio(aio).withMetadata(metadata);
    }

    /**
     * The offsets in the order qemu-img bench issues them: OFFSET, then each previous plus STEP modulo
     * the image size (qemu 7.2's rule); or seeded uniform random SIZE-aligned offsets.
     */
    static long[] offsets(long count, long offset0, long step, long size, long imageSize, boolean random, long seed) {
        if (count > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("-c is too large");
        long[] o = new long[(int) count];
        if (random) {
            SplittableRandom r = new SplittableRandom(seed);
            long slots = imageSize / size;
            for (int i = 0; i < o.length; i++) o[i] = r.nextLong(slots) * size;
            return o;
        }
        long off = offset0;
        for (int i = 0; i < o.length; i++) {
            if (off + size > imageSize) throw new IllegalArgumentException("request " + i + " at offset " + off
                    + " would pass the end of the image (choose -S so offsets stay SIZE-aligned)");
            o[i] = off;
            off = (off + step) % imageSize;
        }
        return o;
    }
}
