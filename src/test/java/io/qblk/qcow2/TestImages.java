package io.qblk.qcow2;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Helpers shared by the engine tests: patterned buffers and running qemu-img / qemu-io. */
final class TestImages {
    private TestImages() {}

    static MemorySegment pattern(long len, int seed) {
        MemorySegment s = Arena.ofAuto().allocate(len, 4096);
        for (long i = 0; i < len; i++) s.set(ValueLayout.JAVA_BYTE, i, (byte) (seed * 31 + i * 7 + (i >>> 9)));
        return s;
    }

    static MemorySegment filled(long len, int b) {
        MemorySegment s = Arena.ofAuto().allocate(len, 4096);
        s.fill((byte) b);
        return s;
    }

    static byte[] read(Qcow2Image img, long off, long len) throws IOException {
        MemorySegment s = Arena.ofAuto().allocate(len, 4096);
        img.read(off, s);
        return s.toArray(ValueLayout.JAVA_BYTE);
    }

    record Result(int exit, String out) {}

    static Result run(String... cmd) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        Process p = pb.start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("timeout: " + String.join(" ", cmd));
        }
        return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8));
    }

    static Result qemuImg(String... args) throws IOException, InterruptedException {
        List<String> c = new ArrayList<>(List.of("qemu-img"));
        c.addAll(List.of(args));
        return run(c.toArray(String[]::new));
    }

    static Result qemuIo(Path img, String command) throws IOException, InterruptedException {
        return run("qemu-io", "-f", "qcow2", "-c", command, img.toString());
    }

    /** qemu-img check must report a clean image (exit 0). */
    static void assertQemuClean(Path img) throws IOException, InterruptedException {
        Result r = qemuImg("check", "-f", "qcow2", img.toString());
        if (r.exit() != 0) throw new AssertionError("qemu-img check " + img + " exit " + r.exit() + ":\n" + r.out());
    }

    /** qemu-img check finds leaked clusters at most (what a crash may leave, e.g. an unused R17 tail reserve). */
    static void assertQemuLeaksOnly(Path img) throws IOException, InterruptedException {
        Result r = qemuImg("check", "-f", "qcow2", img.toString());
        if ((r.exit() != 0 && r.exit() != 3) || r.out().contains("ERROR")) throw new AssertionError("qemu-img check " + img + " exit " + r.exit() + ":\n" + r.out());
    }
}
