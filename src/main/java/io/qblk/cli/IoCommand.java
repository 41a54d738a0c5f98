package io.qblk.cli;

import io.qblk.util.Sizes;
import io.qblk.target.BlockTarget;
import io.qblk.target.ImageFormat;
import io.qblk.qcow2.DiscardMode;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk io}: the qemu-io subset that tests and scripts use: read (with pattern check),
 * write (pattern or zeroes), discard and flush, each given with {@code -c}.
 */
@Command(name = "io", mixinStandardHelpOptions = true, description = "Run qemu-io style commands on an image: read [-P PAT] OFF LEN, "
        + "write [-P PAT] [-z [-u]] OFF LEN, discard OFF LEN, flush.")
public class IoCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "-c", paramLabel = "CMD", description = "a command to run (repeatable, run in order)")
    List<String> commands = new ArrayList<>();

    @Option(names = "-r", description = "open the image read-only")
    boolean readOnly;

    @Option(names = "-f", paramLabel = "FMT", description = "qcow2 or raw (probed when absent)")
    String format;

    @Option(names = {"-d", "--discard"}, paramLabel = "ignore|unmap", defaultValue = "unmap",
            description = "freed qcow2 clusters: unmap (default) punches them out of the file, so its disk usage shrinks; ignore keeps the blocks")
    String discard;

    @Mixin ForceShare share;

    @Parameters(index = "0", paramLabel = "FILE")
    Path file;

    private PrintWriter out;

    /** One parsed command line, e.g. {@code write -P 0xab 0 64k}. */
    record Op(String name, Integer pattern, boolean zero, boolean unmap, long offset, long length) {}

    @Override
    public Integer call() throws IOException {
        out = spec.commandLine().getOut();
        List<Op> ops = new ArrayList<>();
        for (String c : commands) ops.add(parse(c));  // all syntax errors before touching the image
        if (share.on && ops.stream().anyMatch(op -> op.name().equals("write") || op.name().equals("discard")))
            throw new IllegalArgumentException("-U/--force-share opens the image read-only: only read and flush commands");
        ImageFormat fmt = ImageFormat.resolve(format, file);
        return share.run(() -> {
            int rc = 0;
            try (BlockTarget img = TargetOpener.open(file, TargetOptions.defaults().withFormat(fmt).withReadOnly(readOnly || share.on)
                    .withDiscard(DiscardMode.parse(discard)))) {
                for (Op op : ops) {
                    if (!run(img, op)) rc = 1;
                }
            }
            return rc;
        });
    }

    static Op parse(String command) {
        List<String> t = new ArrayList<>(Arrays.asList(command.trim().split("\\s+")));
        if (t.isEmpty() || t.getFirst().isEmpty()) throw new IllegalArgumentException("empty -c command");
        String name = t.removeFirst().toLowerCase(Locale.ROOT);
        Integer pattern = null;
        boolean zero = false, unmap = false;
        while (!t.isEmpty() && t.getFirst().startsWith("-") && t.getFirst().length() > 1) {
            String f = t.removeFirst();
            switch (f) {
                case "-P" -> {
                    if (t.isEmpty()) throw new IllegalArgumentException(name + ": -P needs a pattern");
                    long p = Sizes.parse(t.removeFirst());
                    if (p > 255) throw new IllegalArgumentException(name + ": pattern must be a byte value (0..255)");
                    pattern = (int) p;
                }
                case "-z" -> zero = true;
                case "-u" -> unmap = true;
                default -> throw new IllegalArgumentException(name + ": unknown flag " + f);
            }
        }
        switch (name) {
            case "flush" -> {
                if (!t.isEmpty() || pattern != null || zero) throw new IllegalArgumentException("flush takes no arguments");
                return new Op(name, null, false, false, 0, 0);
            }
            case "read", "write", "discard" -> {
                if (t.size() != 2) throw new IllegalArgumentException(name + ": expected OFFSET LENGTH, got '" + command + "'");
                if (name.equals("discard") && (pattern != null || zero)) throw new IllegalArgumentException("discard takes no flags");
                if (name.equals("read") && zero) throw new IllegalArgumentException("read: -z is for write");
                if (zero && pattern != null) throw new IllegalArgumentException("write: -z and -P exclude each other");
                if (unmap && !zero) throw new IllegalArgumentException("write: -u needs -z");
                return new Op(name, pattern, zero, unmap, Sizes.parse(t.get(0)), Sizes.parse(t.get(1)));
            }
            default -> throw new IllegalArgumentException("unknown io command '" + name + "' (read, write, discard, flush)");
        }
    }

    private boolean run(BlockTarget img, Op op) throws IOException {
        if (op.name().equals("flush")) {
            img.flush();
            return true;
        }
        long size = img.size();
        if (op.offset() + op.length() > size || op.offset() + op.length() < 0) {
            out.println(op.name() + " failed: request [" + op.offset() + ", +" + op.length()
                    + ") exceeds the image size " + size);
            return false;
        }
        long t0 = System.nanoTime();
        boolean ok = true;
        String verb;
        switch (op.name()) {
            case "read" -> {
                verb = "read";
                try (Arena a = Arena.ofConfined()) {
                    MemorySegment buf = a.allocate(Math.max(1, op.length()), 4096).asSlice(0, op.length());
                    img.read(op.offset(), buf);
                    if (op.pattern() != null) {
                        long bad = firstMismatch(buf, (byte) (int) op.pattern());
                        if (bad >= 0) {
                            out.println("Pattern verification failed at offset " + (op.offset() + bad) + ", "
                                    + op.length() + " bytes");
                            ok = false;
                        }
                    }
                }
            }
            case "write" -> {
                verb = "wrote";
                if (op.zero()) {
                    img.writeZeroes(op.offset(), op.length(), op.unmap());
                } else {
                    try (Arena a = Arena.ofConfined()) {
                        MemorySegment buf = a.allocate(Math.max(1, op.length()), 4096).asSlice(0, op.length());
                        buf.fill((byte) (op.pattern() == null ? 0xcd : op.pattern()));
                        img.write(op.offset(), buf, false);
                    }
                }
            }
            default -> {
                verb = "discard";
                img.discard(op.offset(), op.length());
            }
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        out.println(verb + " " + op.length() + "/" + op.length() + " bytes at offset " + op.offset());
        out.println(timing(op.length(), 1, secs));
        return ok;
    }

    /** The qemu-io statistics line: "64 KiB, 1 ops; 00.00 sec (14.994 MiB/sec and 239.9000 ops/sec)". */
    static String timing(long bytes, int ops, double secs) {
        double s = Math.max(secs, 1e-9);
        return String.format(Locale.ROOT, "%s, %d ops; %05.2f sec (%s/sec and %.4f ops/sec)",
                Sizes.ioHuman(bytes), ops, secs, Sizes.ioHuman(bytes / s), ops / s);
    }

    /** Index of the first byte that differs from {@code p}, or -1. */
    static long firstMismatch(MemorySegment buf, byte p) {
        try (Arena a = Arena.ofConfined()) {
            long chunk = Math.min(buf.byteSize(), 1 << 20);
            MemorySegment expect = a.allocate(Math.max(1, chunk)).fill(p);
            for (long o = 0; o < buf.byteSize(); o += chunk) {
                long n = Math.min(chunk, buf.byteSize() - o);
                long m = buf.asSlice(o, n).mismatch(expect.asSlice(0, n));
                if (m >= 0) return o + m;
            }
        }
        return -1;
    }
}
