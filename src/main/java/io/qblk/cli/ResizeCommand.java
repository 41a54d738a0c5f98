package io.qblk.cli;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.ImageFormat;
import io.qblk.util.Sizes;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Unmatched;

/**
 * {@code qblk resize}: changes the virtual size of a qcow2 or raw image, like {@code qemu-img resize}
 * (same messages and exit codes). qcow2 follows docs/ordering.md R8-R10 ({@code Qcow2Image.resize});
 * raw is a truncate. Shrinking needs {@code --shrink}.
 */
@Command(name = "resize", mixinStandardHelpOptions = true,
        description = "Change the virtual size of a qcow2 or raw image, like qemu-img resize ([+|-]SIZE: relative).")
public class ResizeCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "-f", paramLabel = "FMT", description = "qcow2 or raw (probed when absent)")
    String format;

    @Option(names = "--shrink", description = "allow shrinking (data past the new end is lost)")
    boolean shrink;

    @Option(names = "--preallocation", paramLabel = "MODE", description = "off (default) or full (zeroes written into the new area); raw also falloc")
    String preallocation = "off";

    @Option(names = "-q", description = "quiet: no 'Image resized.' line")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    @Parameters(index = "1", arity = "0..1", paramLabel = "[+|-]SIZE", description = "new size, or a change with + or - (k/M/G/T suffixes)")
    String sizeText;

    /** "-1G" looks like an option to the parser: qemu-img takes it as the size too. */
    @Unmatched List<String> unmatched;

    @Override
    public Integer call() throws IOException {
        String text = sizeText;
        if (unmatched != null && !unmatched.isEmpty()) {
            if (text != null || unmatched.size() > 1 || !unmatched.getFirst().matches("-[0-9].*"))
                throw new IllegalArgumentException("unknown option or extra argument: " + String.join(" ", unmatched));
            text = unmatched.getFirst();
        }
        if (text == null) throw new IllegalArgumentException("missing SIZE");
        int sign = text.startsWith("+") ? 1 : text.startsWith("-") ? -1 : 0;
        long amount;
        try {
            amount = Sizes.parse(sign == 0 ? text : text.substring(1));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("Parameter 'size' expects a non-negative number below 2^64 (" + e.getMessage() + ")");
        }
        if (!preallocation.equals("off") && !preallocation.equals("full") && !preallocation.equals("falloc"))
            throw new IllegalArgumentException("--preallocation must be off, falloc or full, not '" + preallocation + "'");
        ImageFormat fmt = ImageFormat.resolve(format, file);
        if (!fmt.hasFile()) throw new IllegalArgumentException("-f " + format + ": resize works on qcow2 or raw images");
        try {
            if (fmt == ImageFormat.RAW) resizeRaw(sign, amount);
            else resizeQcow2(sign, amount);
        } catch (ShrinkRefused e) {
            var err = spec.commandLine().getErr();
            err.println("qblk: " + e.getMessage());
            err.println("qblk: warning: Shrinking an image will delete all data beyond the shrunken image's end. "
                    + "Before performing such an operation, make sure there is no important data there.");
            err.flush();
            return 1;
        }
        if (!quiet) spec.commandLine().getOut().println("Image resized.");
        return 0;
    }

    private long target(long current, int sign, long amount) {
        long size = sign == 0 ? amount : sign > 0 ? current + amount : current - amount;
        if (size <= 0 || (sign > 0 && size < current)) throw new IllegalArgumentException("New image size must be positive");
        return size;
    }

    /** Refuses what qemu-img refuses before touching the image. */
    private void checkDirection(long current, long size) {
        if (size < current && !shrink) throw new ShrinkRefused();
        if (size < current && !preallocation.equals("off")) throw new IllegalArgumentException("Preallocation can only be used for growing images");
    }

    private void resizeRaw(int sign, long amount) throws IOException {
        try (PosixFileBackend f = PosixFileBackend.open(file, false)) { // the write lock, as every write-open
            long current = f.size();
            long size = target(current, sign, amount);
            checkDirection(current, size);
            f.truncate(size);
            if (size > current && preallocation.equals("falloc")) f.allocate(current, size - current);
            if (size > current && preallocation.equals("full")) writeZeroData(current, size, (o, s) -> f.write(o, s));
            f.datasync();
        }
    }

    private void resizeQcow2(int sign, long amount) throws IOException {
        if (preallocation.equals("falloc")) throw new IllegalArgumentException("--preallocation=falloc is not supported for qcow2 by qblk (off or full)");
        OpenOptions o = OpenOptions.defaults();
        long current, size;
        try (PosixFileBackend f = PosixFileBackend.open(file, false)) { // the write lock for both opens below
            try (Qcow2Image img = Qcow2Image.open(f, o, file)) {
                current = img.virtualSize();
                size = target(current, sign, amount);
                checkDirection(current, size);
                if (size % 512 != 0) throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "The new size must be a multiple of 512");
                img.resize(size);
            }
            if (size <= current) return;
            try (Qcow2Image img = Qcow2Image.open(f, o, file)) {
                // qemu: what the old size hid of a longer backing file must not show through the new area
                if (img.backingSize() > current) img.writeZeroes(current, size - current, true);
                if (preallocation.equals("full")) writeZeroData(current, size, img::write);
                img.flush();
            }
        }
    }

    /** qemu-img's two lines: the error, then the warning (exit code 1). */
    private static final class ShrinkRefused extends RuntimeException {
        ShrinkRefused() { super("Use the --shrink option to perform a shrink operation."); }
    }

    private interface Writer {
        void write(long offset, MemorySegment src) throws IOException;
    }

    private static void writeZeroData(long from, long to, Writer w) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment zero = a.allocate(1 << 20, 4096);
            for (long off = from; off < to; off += zero.byteSize()) w.write(off, zero.asSlice(0, Math.min(zero.byteSize(), to - off)));
        }
    }
}
