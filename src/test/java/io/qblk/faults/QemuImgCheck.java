package io.qblk.faults;

import io.qblk.testing.MemoryBackend;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** Runs {@code qemu-img check} on a crash state written to tmpfs; exit 0 clean, 3 leaks only, 1/2 broken. */
final class QemuImgCheck {
    private QemuImgCheck() {}

    static boolean available() {
        try {
            Process p = new ProcessBuilder("qemu-img", "--version").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(20, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    static Path scratchDir() throws IOException {
        Path shm = Path.of("/dev/shm");
        return Files.isDirectory(shm) && Files.isWritable(shm) ? shm : Path.of(System.getProperty("java.io.tmpdir"));
    }

    /** Exit code of {@code qemu-img check -f qcow2} on the state; output in {@code out[0]}. */
    static int check(MemoryBackend state, String[] out) throws IOException {
        return check(state, out, new String[0]);
    }

    /** The same with {@code options} (e.g. "-r", "all": the repair runs on a copy, the state is unchanged). */
    static int check(MemoryBackend state, String[] out, String... options) throws IOException {
        Path f = Files.createTempFile(scratchDir(), "qblk-crash-", ".qcow2");
        try {
            try (OutputStream os = Files.newOutputStream(f)) {
                state.writeTo(os);
            }
            java.util.List<String> cmd = new java.util.ArrayList<>(java.util.List.of("qemu-img", "check", "-f", "qcow2"));
            cmd.addAll(java.util.List.of(options));
            cmd.add(f.toString());
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            byte[] o = p.getInputStream().readAllBytes();
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException("qemu-img check timed out");
            }
            if (out != null) out[0] = new String(o);
            return p.exitValue();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        } finally {
            Files.deleteIfExists(f);
        }
    }
}
