package io.qblk.nbd;

import static io.qblk.nbd.NbdProtocol.*;
import static org.junit.jupiter.api.Assertions.*;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The NBD server under abuse (issue 16): idle-connection floods, running out of file descriptors,
 * one client pipelining huge READs without reading replies, clients that never finish the
 * handshake. Every case ends with another client served and the data it wrote intact; the class
 * prints {@code nbd-abuse: cases=N survived=N data-intact=yes|no} and fails unless all survived.
 * Loopback only; every loop is bounded in count and time.
 */
class NbdAbuseTest implements NbdVariant {
    static final long SIZE = 256L << 20;
    static final AtomicInteger cases = new AtomicInteger(), survived = new AtomicInteger();
    static volatile boolean dataIntact = true;
    @TempDir Path dir;
    NbdServer server;
    MemoryTarget mem;
    InetSocketAddress addr;
    final List<SocketChannel> idle = new ArrayList<>();

    void start(NbdServer.Options options) throws IOException {
        server = new NbdServer(variant(options));
        addr = server.bindTcp("127.0.0.1", 0);
        mem = new MemoryTarget(SIZE, false);
        server.addExport("mem", mem, false);
    }

    @AfterEach
    void stop() {
        for (SocketChannel c : idle) NbdServer.closeQuietly(c);
        idle.clear();
        if (server != null) server.close();
    }

    @AfterAll
    static void summary() {
        String line = "nbd-abuse: cases=" + cases.get() + " survived=" + survived.get() + " data-intact=" + (dataIntact ? "yes" : "no");
        System.out.println(line);
        assertTrue(cases.get() > 0 && cases.get() == survived.get() && dataIntact, line);
    }

    /** Opens an idle TCP connection (no handshake) without waiting for the server to accept it. */
    SocketChannel idleConnection(InetSocketAddress to) throws IOException {
        SocketChannel c = SocketChannel.open();
        c.setOption(StandardSocketOptions.SO_LINGER, 0);
        c.configureBlocking(false);
        c.connect(to);
        idle.add(c);
        return c;
    }

    static byte[] pattern(int len, int seed) {
        byte[] b = new byte[len];
        for (int i = 0; i < len; i++) b[i] = (byte) (seed * 131 + i * 7);
        return b;
    }

    /** A fresh client writes {@code len} bytes at {@code offset}, reads them back and compares; returns the write's duration. */
    static Duration serveAnother(InetSocketAddress to, long offset, int len, int seed) throws IOException {
        try (RawNbdClient c = new RawNbdClient(to).hello().go("mem", true, false)) {
            byte[] p = pattern(len, seed);
            long t0 = System.nanoTime();
            c.request(0, CMD_WRITE, 1, offset, len, p);
            assertEquals(0, c.reply().error(), "write");
            Duration took = Duration.ofNanos(System.nanoTime() - t0);
            c.request(0, CMD_READ, 2, offset, len, null);
            RawNbdClient.Reply r = c.reply();
            assertEquals(REPLY_TYPE_OFFSET_DATA, r.type());
            assertArrayEquals(p, Arrays.copyOfRange(r.payload(), 8, r.payload().length), "read back what was written");
            c.request(0, CMD_DISC, 3, 0, 0, null);
            return took;
        }
    }

    /** The case's end: another client is served and everything written in the case reads back. */
    void survivedWith(String name, long offset, int len, int seed) throws IOException {
        serveAnother(addr, offset, len, seed);
        byte[] b = new byte[len];
        mem.read(offset, java.lang.foreign.MemorySegment.ofArray(b));
        if (!Arrays.equals(pattern(len, seed), b)) dataIntact = false;
        assertArrayEquals(pattern(len, seed), b, name + ": data in the target");
        survived.incrementAndGet();
        System.out.println("nbd-abuse: " + name + " survived");
    }

    static void waitUntil(String what, Duration limit, java.util.function.BooleanSupplier cond) throws InterruptedException {
        long deadline = System.nanoTime() + limit.toNanos();
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) fail("timed out waiting for: " + what);
            Thread.sleep(20);
        }
    }

    @Test
    void idleConnectionFloodIsBoundedAndTimesOut() throws Exception {
        cases.incrementAndGet();
        int limit = 200, flood = 2000;
        start(NbdServer.Options.defaults().withMaxConnections(limit).withHandshakeTimeout(Duration.ofSeconds(2))
                .withInFlightBytes(64L << 20));
        long t0 = System.nanoTime();
        int most = 0;
        for (int i = 0; i < flood && System.nanoTime() - t0 < 20_000_000_000L; i++) {
            idleConnection(addr);
            if (i % 100 == 99) { most = Math.max(most, server.connectionCount()); Thread.sleep(20); } // let the backlog drain
        }
        // Connects that found the backlog full are retried by the kernel (SYN back-off): wait for a good part.
        waitUntil("the limit to refuse the excess", Duration.ofSeconds(30), () -> server.refusedConnections() >= (flood - limit) / 2);
        most = Math.max(most, server.connectionCount());
        assertTrue(most <= limit, "connections " + most + " > limit " + limit);
        assertEquals(0, server.inFlightBytes());
        // Idle sockets hold no native buffer; the handshake timeout frees their slots.
        waitUntil("the handshake timeout to close the idle connections", Duration.ofSeconds(15), () -> server.connectionCount() == 0);
        assertTrue(server.listenerProblems().isEmpty(), server.listenerProblems().toString());
        survivedWith("idle-flood (" + flood + " sockets, limit " + limit + ", refused " + server.refusedConnections() + ")", 0, 1 << 20, 1);
    }

    @Test
    void silentOrSlowHandshakeIsClosedAfterTheTimeout() throws Exception {
        cases.incrementAndGet();
        start(NbdServer.Options.defaults().withHandshakeTimeout(Duration.ofMillis(500)));
        long t0 = System.nanoTime();
        try (RawNbdClient silent = new RawNbdClient(addr); RawNbdClient slow = new RawNbdClient(addr).hello()) {
            silent.in.readFully(new byte[18]); // the greeting; then the client says nothing
            slow.out.writeLong(IHAVEOPT); // half an option header, then nothing
            slow.out.flush();
            assertTrue(silent.closedByServer(), "a silent client is disconnected");
            assertTrue(slow.closedByServer(), "a client stuck mid-option is disconnected");
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms >= 400 && ms < 10_000, "closed after " + ms + " ms (timeout 500 ms)");
        // A client that finished its handshake is not affected by the timer.
        try (RawNbdClient ok = new RawNbdClient(addr).hello().go("mem", true, false)) {
            Thread.sleep(800);
            ok.request(0, CMD_FLUSH, 9, 0, 0, null);
            assertEquals(0, ok.reply().error(), "a served client outlives the handshake timeout");
        }
        survivedWith("handshake-timeout (closed after " + ms + " ms)", 2 << 20, 64 << 10, 2);
    }

    @Test
    void pipelinedHugeReadsWithRepliesUnreadDoNotStarveOthers() throws Exception {
        cases.incrementAndGet();
        long budget = 256L << 20;
        start(NbdServer.Options.defaults().withInFlightBytes(budget));
        long perConnection = server.options().inFlightBytesPerConnection();
        try (RawNbdClient greedy = new RawNbdClient(addr)) {
            greedy.socket.setReceiveBufferSize(64 << 10);
            greedy.hello().go("mem", true, false);
            for (int i = 0; i < 128; i++) greedy.request(0, CMD_READ, 1000 + i, 0, MAX_PAYLOAD, null);
            waitUntil("the greedy client to fill its share", Duration.ofSeconds(10), () -> server.inFlightBytes() >= MAX_PAYLOAD);
            Thread.sleep(300);
            long held = server.inFlightBytes();
            assertTrue(held <= perConnection, "greedy client holds " + held + " > its share " + perConnection);
            // Another client writes 4 MiB blocks while the greedy one holds its share.
            long worst = 0;
            for (int i = 0; i < 8; i++) worst = Math.max(worst, serveAnother(addr, (16L << 20) + (i * (4L << 20)), 4 << 20, 10 + i).toMillis());
            assertTrue(worst < 2000, "a 4 MiB write took " + worst + " ms while another client hogged replies");
            assertTrue(server.inFlightBytes() <= perConnection, "in flight " + server.inFlightBytes());
            System.out.println("nbd-abuse: pipelined-reads held=" + (held >> 20) + " MiB share=" + (perConnection >> 20)
                    + " MiB slowest 4 MiB write=" + worst + " ms");
        }
        waitUntil("the greedy client's requests to be released", Duration.ofSeconds(20), () -> server.inFlightBytes() == 0);
        for (int i = 0; i < 8; i++) {
            byte[] b = new byte[4 << 20];
            mem.read((16L << 20) + (i * (4L << 20)), java.lang.foreign.MemorySegment.ofArray(b));
            if (!Arrays.equals(pattern(4 << 20, 10 + i), b)) dataIntact = false;
        }
        survivedWith("pipelined-reads (128 x 32 MiB unread)", 3 << 20, 1 << 20, 3);
    }

    /** target/classes and target/test-classes only: the child must not spend its few descriptors on jars. */
    static String ownClasses() {
        return Arrays.stream(System.getProperty("java.class.path").split(java.io.File.pathSeparator))
                .filter(e -> !e.endsWith(".jar")).collect(java.util.stream.Collectors.joining(java.io.File.pathSeparator));
    }

    /** A fresh client reads {@code len} bytes at offset 0 of {@code to} and finds {@code pattern(len, seed)}. */
    static void assertHolds(InetSocketAddress to, int len, int seed, String what) throws IOException {
        try (RawNbdClient c = new RawNbdClient(to).hello().go("mem", true, false)) {
            c.request(0, CMD_READ, 1, 0, len, null);
            byte[] got = Arrays.copyOfRange(c.reply().payload(), 8, 8 + len);
            if (!Arrays.equals(pattern(len, seed), got)) dataIntact = false;
            assertArrayEquals(pattern(len, seed), got, what);
        }
    }

    /** An {@link NbdAbuseChild} JVM: its address, the lines it printed after {@code port=N}, its stderr. */
    record Child(Process process, InetSocketAddress address, List<String> lines, Thread reader, Path log) implements AutoCloseable {
        void send(String line) throws IOException {
            process.getOutputStream().write((line + "\n").getBytes(StandardCharsets.UTF_8));
            process.getOutputStream().flush();
        }

        /** Closes its stdin and expects it to exit. */
        void finish() throws Exception {
            process.getOutputStream().close();
            assertTrue(process.waitFor(20, TimeUnit.SECONDS), "child exits when stdin closes");
            reader.join(5000);
        }

        @Override
        public void close() {
            process.destroyForcibly();
        }
    }

    /** Starts a child JVM ({@code wrapper} before java, e.g. prlimit; {@code jvmOptions} after it) and waits for ready=UP. */
    Child startChild(String logName, List<String> wrapper, String... jvmOptions) throws Exception {
        List<String> cmd = new ArrayList<>(wrapper);
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(List.of("--enable-native-access=ALL-UNNAMED", "-Xmx256m"));
        cmd.addAll(List.of(jvmOptions));
        if (variant(NbdServer.Options.defaults()).carrier()) // the child serves its connections on carriers too
            cmd.addAll(List.of("--add-opens", "java.base/java.lang=ALL-UNNAMED", "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
                    "-D" + NbdAbuseChild.CARRIER + "=true"));
        cmd.addAll(List.of("-cp", ownClasses(), NbdAbuseChild.class.getName(), "0", "120"));
        Path log = dir.resolve(logName);
        Process p = new ProcessBuilder(cmd).redirectError(log.toFile()).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
            String first = out.readLine();
            assertNotNull(first, "child printed nothing: " + Files.readString(log));
            assertTrue(first.startsWith("port="), first);
            InetSocketAddress a = new InetSocketAddress("127.0.0.1", Integer.parseInt(first.substring(5)));
            List<String> lines = new java.util.concurrent.CopyOnWriteArrayList<>();
            Thread reader = Thread.ofVirtual().start(() -> {
                try { for (String l; (l = out.readLine()) != null; ) lines.add(l); } catch (IOException ignored) { }
            });
            Child c = new Child(p, a, lines, reader, log);
            waitUntil("the child to report ready", Duration.ofSeconds(10), () -> lines.contains("ready=UP"));
            return c;
        } catch (Throwable t) {
            p.destroyForcibly();
            throw t;
        }
    }

    @Test
    void runningOutOfFileDescriptorsBacksOffAndRecovers() throws Exception {
        cases.incrementAndGet();
        int nofile = 200;
        try (Child ch = startChild("child.err", List.of("prlimit", "--nofile=" + nofile + ":" + nofile))) {
            InetSocketAddress child = ch.address();
            List<String> states = ch.lines();
            Path log = ch.log();
            // More idle connections than the child has descriptors: accept fails with EMFILE.
            for (int i = 0; i < nofile + 100; i++) idleConnection(child);
            waitUntil("the child to report DOWN", Duration.ofSeconds(15), () -> states.stream().anyMatch(s -> s.startsWith("ready=DOWN")));
            Thread.sleep(2000); // let it back off for a while: no busy loop, no flood of log lines
            for (SocketChannel c : idle) NbdServer.closeQuietly(c);
            idle.clear();
            waitUntil("the child to accept again", Duration.ofSeconds(15), () -> states.getLast().equals("ready=UP"));
            Duration write = serveAnother(child, 0, 1 << 20, 4);
            String err = Files.readString(log);
            long backOffLines = err.lines().filter(l -> l.contains("retrying with back-off")).count();
            long totalLines = err.lines().count();
            System.out.println("nbd-abuse: emfile nofile=" + nofile + " states=" + states + " back-off lines=" + backOffLines
                    + " log lines=" + totalLines + " write after recovery=" + write.toMillis() + " ms");
            assertTrue(states.stream().anyMatch(s -> s.contains("Too many open files")), states.toString());
            assertTrue(backOffLines >= 1 && backOffLines <= 3, "one back-off line per episode, got " + backOffLines + ":\n" + err);
            assertTrue(totalLines < 40, "log stays short:\n" + err);
            // The data written after recovery is there for yet another client.
            assertHolds(child, 1 << 20, 4, "data written after recovery");
            ch.finish();
        }
        survived.incrementAndGet();
        System.out.println("nbd-abuse: emfile (child with nofile=" + nofile + ") survived");
    }

    /**
     * Issue 16 case 2 as it happened (direct memory exhausted while clients connect), in a child JVM
     * with {@code -XX:MaxDirectMemorySize=16m} whose direct memory is then taken: clients arriving
     * meanwhile are dropped (each connection's first native buffer fails with "Cannot reserve ...
     * direct buffer memory"), but the accept loop lives, readiness stays UP (the listener accepts
     * throughout, nothing is queued in the backlog) and, once memory is back, the next clients are
     * served and the data written before the exhaustion is intact.
     */
    @Test
    void directMemoryExhaustedOnAcceptDropsClientsButTheListenerSurvives() throws Exception {
        cases.incrementAndGet();
        try (Child ch = startChild("child-oom.err", List.of(), "-XX:MaxDirectMemorySize=16m")) {
            InetSocketAddress child = ch.address();
            List<String> lines = ch.lines();
            Path log = ch.log();
            serveAnother(child, 0, 1 << 20, 5);
            ch.send("fill");
            waitUntil("the child to take its direct memory", Duration.ofSeconds(60), () -> lines.stream().anyMatch(l -> l.startsWith("filled=")));
            int tries = 8, dropped = 0;
            for (int i = 0; i < tries; i++) {
                try {
                    serveAnother(child, (2 + i) << 20, 64 << 10, 10 + i);
                } catch (IOException | AssertionError e) {
                    dropped++;
                }
            }
            List<String> readiness = lines.stream().filter(l -> l.startsWith("ready=")).toList();
            assertEquals(List.of("ready=UP"), readiness, "the listener accepted throughout");
            ch.send("free");
            waitUntil("the child to let its direct memory go", Duration.ofSeconds(30), () -> lines.contains("freed"));
            Duration write = Duration.ZERO;
            for (int i = 0; i < 3; i++) write = write.plus(serveAnother(child, 16L << 20, 1 << 20, 20 + i));
            assertHolds(child, 1 << 20, 5, "data written before the exhaustion");
            String err = Files.readString(log);
            long oomLines = err.lines().filter(l -> l.contains("OutOfMemoryError") && l.contains("direct buffer memory")).count();
            System.out.println("nbd-abuse: direct-memory exhaustion " + lines.stream().filter(l -> l.startsWith("filled=")).findFirst().orElse("")
                    + " dropped=" + dropped + "/" + tries + " oom-log-lines=" + oomLines + " readiness=" + readiness
                    + " 3 writes after recovery=" + write.toMillis() + " ms");
            assertTrue(dropped > 0, "no client met the exhausted direct memory: the case tested nothing");
            assertTrue(oomLines >= 1 && oomLines <= 2 * tries, "one line per dropped connection at most:\n" + err);
            assertTrue(ch.process().isAlive(), "child alive");
            assertEquals(List.of("ready=UP"), lines.stream().filter(l -> l.startsWith("ready=")).toList(), "still UP after recovery");
            ch.finish();
        }
        survived.incrementAndGet();
        System.out.println("nbd-abuse: direct memory exhausted on accept (child with MaxDirectMemorySize=16m) survived");
    }
}
