package io.qblk.service;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs qemu-io against an nbd:// URI (test helper). */
final class QemuIo {
    private QemuIo() {}

    record Result(int exit, String output) {}

    static Result run(String uri, String... commands) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
        if (java.util.Arrays.stream(commands).allMatch(c -> c.startsWith("read"))) cmd.add("-r");
        for (String c : commands) { cmd.add("-c"); cmd.add(c); }
        cmd.add(uri);
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("qemu-io timed out: " + cmd);
        }
        return new Result(p.exitValue(), new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
    }
}
