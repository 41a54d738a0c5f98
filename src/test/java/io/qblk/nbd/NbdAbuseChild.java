package io.qblk.nbd;

import java.net.InetSocketAddress;
import java.time.Duration;

/**
 * A child JVM for {@link NbdAbuseTest}'s EMFILE case: serves a memory export on 127.0.0.1 (port
 * in {@code args[0]}, 0 = any), prints {@code port=N}, then one line {@code ready=UP} /
 * {@code ready=DOWN <why>} each time the listener's readiness changes. Runs until stdin closes or
 * {@code args[1]} seconds pass (bounded). Lines on stdin: {@code fill} takes all direct memory the
 * JVM may reserve (run it with a small {@code -XX:MaxDirectMemorySize}) and prints
 * {@code filled=BYTES}; {@code free} lets it go and prints {@code freed}.
 */
public final class NbdAbuseChild {
    /** System property: serve each connection on a carrier ({@link NbdServer.Options#carrier()}). */
    static final String CARRIER = "qblk.test.nbd.carrier";

    public static void main(String[] args) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(Long.parseLong(args[1])).toNanos();
        MemoryTarget mem = new MemoryTarget(64L << 20, false);
        try (NbdServer server = new NbdServer(NbdServer.Options.defaults().withHandshakeTimeout(Duration.ofSeconds(60))
                .withCarrier(Boolean.getBoolean(CARRIER)))) {
            InetSocketAddress a = server.bindTcp("127.0.0.1", Integer.parseInt(args[0]));
            server.addExport("mem", mem, false);
            // A real server has logged before it runs out of descriptors (the first line loads the time zone data).
            java.util.logging.Logger.getLogger(NbdServer.class.getName()).info("child serving on " + a);
            System.out.println("port=" + a.getPort());
            System.out.flush();
            java.util.List<java.nio.ByteBuffer> hog = new java.util.ArrayList<>();
            Thread stdin = Thread.ofVirtual().start(() -> {
                try {
                    java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in));
                    for (String line; (line = in.readLine()) != null; ) {
                        if (line.equals("fill")) say("filled=" + fill(hog));
                        else if (line.equals("free")) {
                            hog.clear();
                            System.gc();
                            say("freed");
                        }
                    }
                } catch (java.io.IOException ignored) {
                    // stdin closed: the child ends
                }
            });
            String last = "";
            while (stdin.isAlive() && System.nanoTime() < deadline) {
                var p = server.listenerProblems();
                String now = p.isEmpty() ? "ready=UP" : "ready=DOWN " + p.values().iterator().next();
                if (!now.equals(last)) {
                    say(now);
                    last = now;
                }
                Thread.sleep(20);
            }
        }
    }

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    /** Reserves direct buffers, halving the size on each refusal down to one byte; returns the bytes held. */
    private static long fill(java.util.List<java.nio.ByteBuffer> hog) {
        long held = 0;
        for (int size = 1 << 20; size >= 1; ) {
            try {
                hog.add(java.nio.ByteBuffer.allocateDirect(size));
                held += size;
            } catch (OutOfMemoryError e) {
                size /= 2;
            }
        }
        return held;
    }
}
