package io.qblk.nbd;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs an external tool (qemu-io, qemu-img, nbdinfo, fio) with a timeout and captures its output. */
public final class Proc {
    public record Result(int exit, String out) {
        public Result ok(String what) {
            if (exit != 0) throw new AssertionError(what + " failed with exit " + exit + ":\n" + out);
            return this;
        }
    }

    private Proc() {}

    public static Result run(int timeoutSeconds, String... cmd) throws IOException, InterruptedException {
        return run(timeoutSeconds, List.of(cmd));
    }

    public static Result run(int timeoutSeconds, List<String> cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(new ArrayList<>(cmd)).redirectErrorStream(true).start();
        p.getOutputStream().close();
        byte[][] out = new byte[1][];
        Thread reader = Thread.ofVirtual().start(() -> {
            try { out[0] = p.getInputStream().readAllBytes(); } catch (IOException e) { out[0] = new byte[0]; }
        });
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            p.waitFor();
            reader.join();
            throw new AssertionError(String.join(" ", cmd) + " timed out after " + timeoutSeconds + " s:\n"
                    + new String(out[0] == null ? new byte[0] : out[0], StandardCharsets.UTF_8));
        }
        reader.join();
        return new Result(p.exitValue(), new String(out[0], StandardCharsets.UTF_8));
    }
}
