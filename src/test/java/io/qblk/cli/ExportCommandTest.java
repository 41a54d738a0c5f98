package io.qblk.cli;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.nbd.Proc;
import io.qblk.nbd.TestCerts;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.io.RandomAccessFile;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** `qblk export --nbd`: in-process runs driven by real clients, a child JVM stopped by SIGTERM, bad input. */
class ExportCommandTest {
    @TempDir Path dir;

    Path rawImage(long size) throws Exception {
        Path p = dir.resolve("disk.raw");
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) { f.setLength(size); }
        return p;
    }

    /** A running export in this JVM. */
    final class Running implements AutoCloseable {
        final AtomicReference<ExportCommand> cmd = new AtomicReference<>();
        final StringWriter out = new StringWriter(), err = new StringWriter();
        final Thread thread;
        volatile int exit = -1;
        final String uri;

        Running(String... args) throws Exception {
            CommandLine.IFactory f = new CommandLine.IFactory() {
                @Override
                public <K> K create(Class<K> cls) throws Exception {
                    K k = CommandLine.defaultFactory().create(cls);
                    if (k instanceof ExportCommand e) cmd.set(e);
                    return k;
                }
            };
            CommandLine cl = QblkMain.commandLine(f);
            cl.setOut(new PrintWriter(out, true));
            cl.setErr(new PrintWriter(err, true));
            List<String> a = new ArrayList<>(List.of("export"));
            a.addAll(List.of(args));
            thread = Thread.ofPlatform().start(() -> exit = cl.execute(a.toArray(String[]::new)));
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (cmd.get() == null && System.nanoTime() < deadline) Thread.sleep(5);
            uri = cmd.get().awaitUri();
        }

        int stop() throws InterruptedException {
            cmd.get().stop();
            thread.join(10_000);
            return exit;
        }

        @Override
        public void close() throws Exception {
            if (thread.isAlive()) stop();
        }
    }

    @Test
    void servesARawFileOverTcpAndClosesItOnStop() throws Exception {
        Path img = rawImage(32 << 20);
        try (Running r = new Running("--nbd", "127.0.0.1:0", "--name", "vm1", "-t", "raw", img.toString())) {
            assertTrue(r.uri.matches("nbd://127\\.0\\.0\\.1:\\d+/vm1"), r.uri);
            assertEquals(r.uri, r.out.toString().strip(), "the URI is what export prints");
            Proc.run(30, "qemu-io", "-f", "raw", r.uri, "-c", "write -P 0x5c 1M 64k", "-c", "read -P 0x5c 1M 64k").ok("qemu-io");
            assertEquals(0, r.stop());
        }
        assertEquals((byte) 0x5c, Files.readAllBytes(img)[1 << 20]);
    }

    /** --nbd-carrier on: qemu-io writes and reads a qcow2 through connections on their own ring; the image stays clean. */
    @Test
    void servesAQcow2OnPerConnectionCarriers() throws Exception {
        Path img = dir.resolve("disk.qcow2");
        Proc.run(30, "qemu-img", "create", "-q", "-f", "qcow2", img.toString(), "64M").ok("qemu-img create");
        try (Running r = new Running("--nbd", "127.0.0.1:0", "--nbd-carrier", "on", img.toString())) {
            Proc.run(30, "qemu-io", "-f", "raw", r.uri, "-c", "write -P 0x3a 1M 256k", "-c", "write -P 0x3b 8M 4k",
                    "-c", "flush").ok("qemu-io write");
            Proc.run(30, "qemu-io", "-f", "raw", r.uri, "-c", "read -P 0x3a 1M 256k", "-c", "read -P 0x3b 8M 4k",
                    "-c", "read -P 0 0 1M").ok("qemu-io read");
            assertEquals(0, r.stop());
        }
        Proc.run(30, "qemu-img", "check", img.toString()).ok("qemu-img check");
        Proc.run(30, "qemu-io", "-f", "qcow2", img.toString(), "-c", "read -P 0x3a 1M 256k", "-c", "read -P 0x3b 8M 4k").ok("data on disk");
    }

    @Test
    void servesReadOnlyOverAUnixSocketWithDetectedFormat() throws Exception {
        Path img = rawImage(8 << 20);
        Path sock = dir.resolve("e.sock");
        try (Running r = new Running("--nbd", "unix:" + sock, "--read-only", img.toString())) {
            assertEquals("nbd+unix:///?socket=" + sock.toAbsolutePath(), r.uri);
            Proc.Result w = Proc.run(30, "qemu-io", "-f", "raw", r.uri, "-c", "write -P 1 0 4k");
            assertTrue(w.out().contains("not permitted") || w.out().contains("read-only") || w.out().contains("Permission"), w.out());
            Proc.run(30, "qemu-io", "-r", "-f", "raw", r.uri, "-c", "read -P 0 0 4k").ok("read");
            assertEquals(0, r.stop());
        }
        assertFalse(Files.exists(sock));
    }

    @Test
    void nullTargetHasTheRequestedSize() throws Exception {
        try (Running r = new Running("-t", "null", "--size", "1G", "--nbd", "127.0.0.1:0", "--name", "n")) {
            Proc.Result info = Proc.run(30, "qemu-img", "info", r.uri).ok("qemu-img info");
            assertTrue(info.out().contains("(1073741824 bytes)"), info.out());
            assertEquals(0, r.stop());
        }
    }

    @Test
    void sigtermFlushesClosesAndExits() throws Exception {
        Path img = rawImage(16 << 20);
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                ExportMainForTest.class.getName(), "export", "--nbd", "127.0.0.1:0", "--name", "t", img.toString())
                .redirectError(ProcessBuilder.Redirect.DISCARD).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
            String uri = out.readLine();
            assertNotNull(uri, "export printed no URI");
            assertTrue(uri.startsWith("nbd://127.0.0.1:"), uri);
            Proc.run(30, "qemu-io", "-f", "raw", uri, "-c", "write -P 0x7e 0 128k").ok("qemu-io");
            p.destroy(); // SIGTERM
            assertTrue(p.waitFor(20, TimeUnit.SECONDS), "export did not stop on SIGTERM");
            assertEquals(143, p.exitValue(), "JVM exit status for SIGTERM");
        } finally {
            p.destroyForcibly();
        }
        byte[] f = Files.readAllBytes(img);
        assertEquals((byte) 0x7e, f[0]);
        assertEquals((byte) 0x7e, f[(128 << 10) - 1]);
    }

    /** --tls-verify-peer: a client certificate signed by ca-cert.pem is required, as with qemu-nbd verify-peer=on. */
    @Test
    void tlsVerifyPeerRequiresAClientCertificate() throws Exception {
        TestCerts c = TestCerts.make(Files.createDirectories(dir.resolve("certs")));
        Path img = rawImage(16 << 20);
        try (Running r = new Running("--nbd", "127.0.0.1:0", "--name", "e", "--tls-creds", c.server.toString(),
                "--tls-verify-peer", "-t", "raw", img.toString())) {
            int port = Integer.parseInt(r.uri.replaceAll("^nbds://127\\.0\\.0\\.1:(\\d+)/e$", "$1"));
            Proc.Result ok = TestCerts.qemuImgInfo(port, c.clientCert, null).ok("qemu-img info with a client certificate");
            assertTrue(ok.out().contains("virtual size: 16 MiB"), ok.out());
            assertNotEquals(0, TestCerts.qemuImgInfo(port, c.client, null).exit(), "no client certificate must be refused");
            assertNotEquals(0, TestCerts.qemuImgInfo(port, c.foreignClientCert, null).exit(), "another CA's certificate must be refused");
            assertEquals(0, r.stop());
        }
        try (Running r = new Running("--nbd", "127.0.0.1:0", "--name", "e", "--tls-creds", c.server.toString(),
                "--tls-verify-peer", "--tls-protocols", "1.3", "-t", "raw", img.toString())) {
            int port = Integer.parseInt(r.uri.replaceAll("^nbds://127\\.0\\.0\\.1:(\\d+)/e$", "$1"));
            TestCerts.qemuImgInfo(port, c.ecClientCert, TestCerts.ONLY_TLS13).ok("EC client certificate under TLS 1.3");
            assertNotEquals(0, TestCerts.qemuImgInfo(port, c.ecClientCert, TestCerts.ONLY_TLS12).exit(), "only 1.3 is offered");
            assertEquals(0, r.stop());
        }
        // Without verify-peer the CA-only client directory is enough.
        try (Running r = new Running("--nbd", "127.0.0.1:0", "--name", "e", "--tls-creds", c.server.toString(), "-t", "raw", img.toString())) {
            int port = Integer.parseInt(r.uri.replaceAll("^nbds://127\\.0\\.0\\.1:(\\d+)/e$", "$1"));
            TestCerts.qemuImgInfo(port, c.client, TestCerts.ONLY_TLS13).ok("no client certificate needed");
            assertEquals(0, r.stop());
        }
        assertError(-1, "need --tls-creds", "--nbd", "127.0.0.1:0", "--tls-verify-peer", img.toString());
        assertError(1, "unknown TLS protocol version 'ssl3'", "--nbd", "127.0.0.1:0", "--tls-creds", c.server.toString(),
                "--tls-protocols", "ssl3", img.toString());
    }

    @Test
    void badInputGetsOneLineErrors() throws Exception {
        assertError(-1, "missing FILE", "--nbd", "127.0.0.1:0");
        assertError(1, "no such file", "--nbd", "127.0.0.1:0", dir.resolve("absent.raw").toString());
        assertError(-1, "needs --size", "-t", "null", "--nbd", "127.0.0.1:0");
        assertError(1, "is not a size", "-t", "null", "--size", "12Q", "--nbd", "127.0.0.1:0");
        assertError(1, "multiple of 512", "-t", "null", "--size", "1000", "--nbd", "127.0.0.1:0");
        assertError(1, "unknown format", "-t", "vmdk", rawImage(1 << 20).toString());
        assertError(1, "bad NBD address", "--nbd=localhost", rawImage(1 << 20).toString());
        assertError(-1, "--nbd-carrier 'maybe': expected auto, on or off", "--nbd", "127.0.0.1:0", "--nbd-carrier", "maybe",
                rawImage(1 << 20).toString());
        assertError(1, "TLS credentials directory not found", "--nbd", "127.0.0.1:0", "--tls-creds",
                dir.resolve("no-creds").toString(), rawImage(1 << 20).toString());
        Files.createDirectories(dir.resolve("empty-creds"));
        assertError(1, "server-cert.pem: missing", "--nbd", "127.0.0.1:0", "--tls-creds",
                dir.resolve("empty-creds").toString(), rawImage(1 << 20).toString());
    }

    private void assertError(int code, String text, String... args) {
        StringWriter err = new StringWriter();
        CommandLine cl = QblkMain.commandLine(CommandLine.defaultFactory());
        cl.setErr(new PrintWriter(err, true));
        cl.setOut(new PrintWriter(new StringWriter(), true));
        List<String> a = new ArrayList<>(List.of("export"));
        a.addAll(List.of(args));
        int rc = cl.execute(a.toArray(String[]::new));
        if (code < 0) assertNotEquals(0, rc, err.toString()); // usage error: the CLI's convention decides 1 or 2
        else assertEquals(code, rc, err.toString());
        assertTrue(err.toString().contains(text), err.toString());
        assertFalse(err.toString().contains("\tat "), "no stack trace: " + err);
    }

    @Test
    void nbdOptionTakesAnAddressOnlyWhenOneFollows() {
        assertTrue(ExportCommand.looksLikeAddress("127.0.0.1:10809"));
        assertTrue(ExportCommand.looksLikeAddress(":10810"));
        assertTrue(ExportCommand.looksLikeAddress("[::1]:10809"));
        assertTrue(ExportCommand.looksLikeAddress("unix:/run/x.sock"));
        assertFalse(ExportCommand.looksLikeAddress("disk.qcow2"));
        assertFalse(ExportCommand.looksLikeAddress("/images/disk.raw"));
        ExportCommand c = new ExportCommand();
        new CommandLine(c).parseArgs("--nbd", "disk.qcow2");
        assertEquals(ExportCommand.DEFAULT_NBD_ADDRESS, c.nbd);
        assertEquals(Path.of("disk.qcow2"), c.file);
        ExportCommand d = new ExportCommand();
        new CommandLine(d).parseArgs("--nbd", "unix:/tmp/s", "disk.qcow2");
        assertEquals("unix:/tmp/s", d.nbd);
        assertEquals(Path.of("disk.qcow2"), d.file);
        assertEquals("::1", ExportCommand.parseTcp("[::1]:99").getHostString());
        assertEquals("127.0.0.1", ExportCommand.parseTcp(":99").getHostString());
        assertEquals(1L << 30, ExportCommand.parseSize("1G"));
        assertEquals(512L << 20, ExportCommand.parseSize("512MiB"));
        assertEquals(4096, ExportCommand.parseSize("4096"));
    }
}
