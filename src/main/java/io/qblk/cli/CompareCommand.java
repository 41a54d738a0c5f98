package io.qblk.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk compare}: whether two images have the same guest-visible contents, with qemu-img
 * compare's messages and exit codes (0 identical, 1 different, 2 error).
 */
@Command(name = "compare", mixinStandardHelpOptions = true,
        description = "Check whether two images have the same contents, like qemu-img compare: exit 0 identical, 1 different, 2 error.")
public class CompareCommand implements Callable<Integer> {
    /** qemu-img's IO_BUF_SIZE: the most compared per read. */
    static final int CHUNK = 2 << 20;

    @Spec CommandSpec spec;

    @Option(names = "-f", paramLabel = "FMT", description = "format of the first image: qcow2 or raw (probed when absent)")
    String format1;

    @Option(names = "-F", paramLabel = "FMT", description = "format of the second image (probed when absent)")
    String format2;

    @Option(names = "-s", description = "strict: a size difference or a different allocation state is a mismatch too")
    boolean strict;

    @Option(names = "-p", description = "show progress")
    boolean progress;

    @Option(names = "-q", description = "quiet: print nothing, only the exit code tells")
    boolean quiet;

    @Mixin ForceShare share;

    @Parameters(index = "0", paramLabel = "FILE1")
    Path file1;

    @Parameters(index = "1", paramLabel = "FILE2")
    Path file2;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        Progress p = Progress.of(out, progress && !quiet, 2.0);
        try (SourceImage a = share.run(() -> SourceImage.open(file1, format1));
             SourceImage b = share.run(() -> SourceImage.open(file2, format2))) {
            String verdict = compare(a, b, strict, p);
            if (!quiet) out.println(verdict == null ? "Images are identical." : verdict);
            p.end();
            return verdict == null ? 0 : 1;
        } catch (Exception e) {
            out.flush();
            spec.commandLine().getErr().println("qblk: " + CliErrors.message(e));
            return 2;
        } finally {
            out.flush();
        }
    }

    /**
     * Null when {@code a} and {@code b} read the same, else qemu-img's message for the first
     * difference. A size warning (non-strict) goes to {@code p}'s output as qemu-img prints it.
     */
    String compare(SourceImage a, SourceImage b, boolean strict, Progress p) throws IOException {
        long common = Math.min(a.size, b.size);
        if (strict && a.size != b.size) return "Strict mode: Image size mismatch!";
        p.start();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment b1 = arena.allocate(CHUNK, 4096), b2 = arena.allocate(CHUNK, 4096);
            long chunk;
            for (long off = 0; off < common; off += chunk) {
                SourceImage.Status s1 = a.status(off, a.size), s2 = b.status(off, b.size);
                chunk = Math.min(s1.length(), s2.length());
                if (strict && s1.flags() != s2.flags()) return "Strict mode: Offset " + off + " block status mismatch!";
                boolean alloc1 = s1.has(SourceImage.ALLOCATED), alloc2 = s2.has(SourceImage.ALLOCATED);
                if (s1.has(SourceImage.ZERO) && s2.has(SourceImage.ZERO)) {
                    // both read as zeroes
                } else if (alloc1 == alloc2) {
                    if (alloc1) {
                        chunk = Math.min(chunk, CHUNK);
                        a.read(off, b1.asSlice(0, chunk));
                        b.read(off, b2.asSlice(0, chunk));
                        long d = SourceImage.firstDifferentSector(b1, b2, chunk);
                        if (d >= 0) return mismatch(off + d);
                    }
                } else {
                    chunk = Math.min(chunk, CHUNK);
                    SourceImage allocated = alloc1 ? a : b;
                    String m = nonZero(allocated, off, chunk, b1);
                    if (m != null) return m;
                }
                p.advance(chunk, common);
            }
            if (a.size != b.size) {
                if (!quiet) spec.commandLine().getOut().println("Warning: Image size mismatch!");
                SourceImage over = a.size > b.size ? a : b;
                for (long off = common; off < over.size; off += chunk) {
                    SourceImage.Status s = over.status(off, over.size);
                    chunk = s.length();
                    if (s.has(SourceImage.ALLOCATED)) {
                        chunk = Math.min(chunk, CHUNK);
                        String m = nonZero(over, off, chunk, b1);
                        if (m != null) return m;
                    }
                    p.advance(chunk, over.size);
                }
            }
        }
        return null;
    }

    private static String nonZero(SourceImage img, long off, long len, MemorySegment buf) throws IOException {
        img.read(off, buf.asSlice(0, len));
        long nz = SourceImage.firstNonZeroSector(buf, len);
        return nz < 0 ? null : mismatch(off + nz);
    }

    private static String mismatch(long offset) {
        return "Content mismatch at offset " + offset + "!";
    }
}
