package io.qblk.nbd;

import java.net.InetSocketAddress;
import java.time.Duration;

/**
 * A child JVM for {@link NbdAbuseTest}'s EMFILE case: serves a memory export on 127.0.0.1 (port
 * in {@code args[0]}, 0 = any), prints {@code port=N}, then one line {@code ready=UP} /
 * {@code ready=DOWN <why>} each time the listener's readiness changes. Runs until stdin closes or
 * {@code args[1]} seconds pass (bounded).
 */
public final class NbdAbuseChild {
    public static void main(String[] args) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(Long.parseLong(args[1])).toNanos();
        MemoryTarget mem = new MemoryTarget(64L << 20, false);
        try (NbdServer server = new NbdServer(NbdServer.Options.defaults().withHandshakeTimeout(Duration.ofSeconds(60)))) {
            InetSocketAddress a = server.bindTcp("127.0.0.1", Integer.parseInt(args[0]));
            server.addExport("mem", mem, false);
            // A real server has logged before it runs out of descriptors (the first line loads the time zone data).
            java.util.logging.Logger.getLogger(NbdServer.class.getName()).info("child serving on " + a);
            System.out.println("port=" + a.getPort());
            System.out.flush();
            Thread stdin = Thread.ofVirtual().start(() -> {
                try { while (System.in.read() >= 0) { } } catch (java.io.IOException ignored) { }
            });
            String last = "";
            while (stdin.isAlive() && System.nanoTime() < deadline) {
                var p = server.listenerProblems();
                String now = p.isEmpty() ? "ready=UP" : "ready=DOWN " + p.values().iterator().next();
                if (!now.equals(last)) {
                    System.out.println(now);
                    System.out.flush();
                    last = now;
                }
                Thread.sleep(20);
            }
        }
    }
}
