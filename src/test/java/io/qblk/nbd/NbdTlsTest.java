package io.qblk.nbd;

import static io.qblk.nbd.NbdProtocol.*;
import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * NBD over TLS with qemu's tls-creds-x509 layout: an openssl-made CA and a server certificate for
 * IP 127.0.0.1; qemu-img, qemu-io and nbdinfo read and write a qblk TLS export, a plain client is
 * refused, and every command is first checked against qemu-nbd with the same certificates.
 */
class NbdTlsTest implements NbdVariant {
    static final long SIZE = 64L << 20;
    @TempDir static Path certs;
    static TestCerts creds;
    static Path serverDir, clientDir, clientCertDir;
    NbdServer server;
    MemoryTarget mem;
    Process qemuNbd;

    @BeforeAll
    static void makeCertificates() throws Exception {
        creds = TestCerts.make(certs);
        serverDir = creds.server;
        clientDir = creds.client;
        clientCertDir = creds.clientCert;
    }

    static void openssl(String... args) throws Exception {
        TestCerts.openssl(args);
    }

    @AfterEach
    void stop() throws Exception {
        if (server != null) server.close();
        if (qemuNbd != null) {
            qemuNbd.destroy();
            qemuNbd.waitFor();
        }
    }

    int startQblk(boolean verifyPeer) throws IOException {
        return startQblk(verifyPeer, NbdTls.defaultProtocols(verifyPeer));
    }

    int startQblk(boolean verifyPeer, List<String> protocols) throws IOException {
        mem = new MemoryTarget(SIZE, false);
        server = new NbdServer(variant(NbdServer.Options.defaults().withTls(NbdTls.load(serverDir, verifyPeer, protocols), true)));
        InetSocketAddress a = server.bindTcp("127.0.0.1", 0);
        server.addExport("e", mem, false);
        assertEquals("nbds://127.0.0.1:" + a.getPort() + "/e", server.uris("e").getFirst());
        return a.getPort();
    }

    /** The oracle: qemu-nbd serving a raw file with the same server credentials. */
    int startQemuNbd() throws Exception {
        return startQemuNbd(false);
    }

    int startQemuNbd(boolean verifyPeer) throws Exception {
        Path img = certs.resolve("oracle.raw");
        Files.deleteIfExists(img);
        Proc.run(30, "qemu-img", "create", "-f", "raw", img.toString(), "64M").ok("qemu-img create");
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) { port = s.getLocalPort(); }
        qemuNbd = new ProcessBuilder("qemu-nbd", "-t", "-e", "8", "-f", "raw", "--object",
                "tls-creds-x509,id=s,dir=" + serverDir + ",endpoint=server,verify-peer=" + (verifyPeer ? "on" : "off"), "--tls-creds", "s",
                "-b", "127.0.0.1", "-p", String.valueOf(port), "-x", "e", img.toString())
                .redirectErrorStream(true).redirectOutput(certs.resolve("qemu-nbd.log").toFile()).start();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (true) {
            try (java.net.Socket s = new java.net.Socket("127.0.0.1", port)) { break; } catch (IOException e) {
                if (System.nanoTime() > deadline) fail("qemu-nbd did not start: " + Files.readString(certs.resolve("qemu-nbd.log")));
                Thread.sleep(50);
            }
        }
        return port;
    }

    static Proc.Result qemuImgInfo(int port, Path creds) throws Exception {
        return TestCerts.qemuImgInfo(port, creds, null);
    }

    static Proc.Result qemuIo(int port, Path creds, String... cmds) throws Exception {
        List<String> c = new ArrayList<>(List.of("qemu-io", "--object", "tls-creds-x509,id=t,dir=" + creds + ",endpoint=client",
                "--image-opts", "driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port=" + port + ",file.export=e,file.tls-creds=t"));
        for (String x : cmds) { c.add("-c"); c.add(x); }
        return Proc.run(60, c);
    }

    /** Runs the acceptance commands against whichever server listens on {@code port}. */
    static void assertTlsClientsWork(int port, String who) throws Exception {
        Proc.Result info = qemuImgInfo(port, clientDir).ok("qemu-img info over TLS against " + who);
        assertTrue(info.out().contains("virtual size: 64 MiB (67108864 bytes)"), info.out());
        Proc.Result io = qemuIo(port, clientDir, "write -P 0x5a 1M 1M", "read -P 0x5a 1M 1M", "read -P 0 0 1M")
                .ok("qemu-io over TLS against " + who);
        assertFalse(io.out().contains("Pattern verification failed"), io.out());
        assertTrue(io.out().contains("read 1048576/1048576 bytes at offset 1048576"), io.out());
        Proc.Result nbdinfo = Proc.run(60, "nbdinfo", "nbds://127.0.0.1:" + port + "/e?tls-certificates=" + clientDir)
                .ok("nbdinfo nbds:// against " + who);
        assertTrue(nbdinfo.out().contains("with TLS"), nbdinfo.out());
        assertTrue(nbdinfo.out().contains("export-size: 67108864"), nbdinfo.out());
        Proc.Result plain = Proc.run(60, "qemu-img", "info", "nbd://127.0.0.1:" + port + "/e");
        assertNotEquals(0, plain.exit(), "a plain client must be refused by " + who + ":\n" + plain.out());
        assertTrue(plain.out().contains("TLS"), plain.out());
    }

    @Test
    void qemuAndLibnbdClientsUseTlsAndAPlainClientIsRefused() throws Exception {
        assertTlsClientsWork(startQemuNbd(), "qemu-nbd");
        int port = startQblk(false);
        assertTlsClientsWork(port, "qblk");
        byte[] b = new byte[1 << 20];
        mem.read(1 << 20, java.lang.foreign.MemorySegment.ofArray(b));
        for (byte x : b) assertEquals((byte) 0x5a, x);
    }

    @Test
    void tlsRequiredRefusesOptionsBeforeStartTls() throws Exception {
        int port = startQblk(false);
        try (RawNbdClient c = new RawNbdClient(new InetSocketAddress("127.0.0.1", port)).hello()) {
            c.option(OPT_LIST, new byte[0]);
            assertEquals(REP_ERR_TLS_REQD, c.optionReply().type());
            c.option(OPT_GO, RawNbdClient.goData("e"));
            assertEquals(REP_ERR_TLS_REQD, c.optionReply().type());
            c.option(OPT_STARTTLS, new byte[3]);
            assertEquals(REP_ERR_INVALID, c.optionReply().type(), "STARTTLS takes no data");
            c.option(OPT_EXPORT_NAME, "e".getBytes());
            assertTrue(c.closedByServer(), "EXPORT_NAME before TLS disconnects (it has no error reply)");
        }
        assertEquals(0, server.connectionCount() > 1 ? 1 : 0);
    }

    @Test
    void startTlsWithoutCredentialsIsUnsupported() throws Exception {
        server = new NbdServer(variant(NbdServer.Options.defaults()));
        InetSocketAddress a = server.bindTcp("127.0.0.1", 0);
        server.addExport("e", new MemoryTarget(SIZE, false), false);
        try (RawNbdClient c = new RawNbdClient(a).hello()) {
            c.option(OPT_STARTTLS, new byte[0]);
            assertEquals(REP_ERR_UNSUP, c.optionReply().type());
            c.go("e", true, true); // the session goes on in the clear
        }
    }

    @Test
    void verifyPeerNeedsAClientCertificateSignedByTheCa() throws Exception {
        int port = startQblk(true);
        Proc.Result with = qemuImgInfo(port, clientCertDir).ok("qemu-img info with a client certificate");
        assertTrue(with.out().contains("virtual size: 64 MiB"), with.out());
        Proc.Result without = qemuImgInfo(port, clientDir);
        assertNotEquals(0, without.exit(), "no client certificate must be refused:\n" + without.out());
    }

    /**
     * Client certificates under TLS 1.3 (protocols 1.3,1.2): gnutls clients with an EC key are
     * verified under 1.3 and with an RSA key under 1.2; an RSA key forced to 1.3 is refused
     * (gnutls offers no RSA certificate to a JSSE CertificateRequest; see NbdTls); a certificate of
     * another CA and no certificate are refused under both versions. qemu-nbd verify-peer=on (a
     * gnutls server) takes the same RSA certificate under 1.3: the difference is JSSE's request.
     */
    @Test
    void verifyPeerUnderTls13AndTls12() throws Exception {
        int oracle = startQemuNbd(true);
        TestCerts.qemuImgInfo(oracle, clientCertDir, TestCerts.ONLY_TLS13).ok("qemu-nbd: RSA client certificate under TLS 1.3");
        TestCerts.qemuImgInfo(oracle, creds.ecClientCert, TestCerts.ONLY_TLS13).ok("qemu-nbd: EC client certificate under TLS 1.3");
        assertNotEquals(0, TestCerts.qemuImgInfo(oracle, creds.foreignClientCert, TestCerts.ONLY_TLS13).exit(), "qemu-nbd: another CA");
        int port = startQblk(true, List.of(NbdTls.TLS13, NbdTls.TLS12));
        for (String prio : new String[] {TestCerts.ONLY_TLS13, TestCerts.ONLY_TLS12, null}) {
            Proc.Result ec = TestCerts.qemuImgInfo(port, creds.ecClientCert, prio).ok("EC client certificate, priority " + prio);
            assertTrue(ec.out().contains("virtual size: 64 MiB"), ec.out());
            assertNotEquals(0, TestCerts.qemuImgInfo(port, creds.foreignClientCert, prio).exit(), "another CA's certificate, " + prio);
            assertNotEquals(0, TestCerts.qemuImgInfo(port, clientDir, prio).exit(), "no certificate, " + prio);
        }
        TestCerts.qemuImgInfo(port, clientCertDir, TestCerts.ONLY_TLS12).ok("RSA client certificate under TLS 1.2");
        assertNotEquals(0, TestCerts.qemuImgInfo(port, clientCertDir, TestCerts.ONLY_TLS13).exit(),
                "gnutls sends no RSA client certificate to JSSE under TLS 1.3 (if this passes, the limitation is gone: update NbdTls)");
        Proc.Result nbdinfo = Proc.run(60, "nbdinfo", "nbds://127.0.0.1:" + port + "/e?tls-certificates=" + creds.ecClientCert)
                .ok("nbdinfo with an EC client certificate");
        assertTrue(nbdinfo.out().contains("export-size: 67108864"), nbdinfo.out());
    }

    @Test
    void verifyPeerDefaultsToTls12SoRsaClientCertificatesWork() throws Exception {
        assertEquals(List.of(NbdTls.TLS12), NbdTls.load(serverDir, true).protocols());
        assertEquals(List.of(NbdTls.TLS13, NbdTls.TLS12), NbdTls.load(serverDir, false).protocols());
        int port = startQblk(true);
        TestCerts.qemuImgInfo(port, clientCertDir, null).ok("RSA client certificate, default protocols");
        assertNotEquals(0, TestCerts.qemuImgInfo(port, creds.ecClientCert, TestCerts.ONLY_TLS13).exit(),
                "TLS 1.3 is not offered by default with verify-peer");
    }

    @Test
    void protocolListsParse() {
        assertEquals(List.of(NbdTls.TLS13, NbdTls.TLS12), NbdTls.parseProtocols("1.3,1.2"));
        assertEquals(List.of(NbdTls.TLS12, NbdTls.TLS13), NbdTls.parseProtocols(" TLSv1.2 , tls1.3,1.2"));
        assertEquals(List.of(NbdTls.TLS13), NbdTls.parseProtocols("TLS1.3"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> NbdTls.parseProtocols("1.3,1.1"));
        assertTrue(e.getMessage().contains("unknown TLS protocol version '1.1'"), e.getMessage());
        assertThrows(IOException.class, () -> NbdTls.load(serverDir, false, List.of()));
    }

    @Test
    void credentialProblemsAreOneClearLine() throws Exception {
        Path d = Files.createTempDirectory(certs, "bad");
        IOException e = assertThrows(IOException.class, () -> NbdTls.load(d, false));
        assertTrue(e.getMessage().contains("server-cert.pem: missing"), e.getMessage());
        Files.copy(serverDir.resolve("server-cert.pem"), d.resolve("server-cert.pem"));
        Files.writeString(d.resolve("server-key.pem"), "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n");
        e = assertThrows(IOException.class, () -> NbdTls.load(d, false));
        assertTrue(e.getMessage().contains("unsupported key type 'EC PRIVATE KEY'"), e.getMessage());
        // A PKCS#1 RSA key ("BEGIN RSA PRIVATE KEY") is converted and works.
        openssl("pkey", "-in", serverDir.resolve("server-key.pem").toString(), "-traditional", "-out", d.resolve("server-key.pem").toString());
        assertTrue(Files.readString(d.resolve("server-key.pem")).contains("BEGIN RSA PRIVATE KEY"));
        Files.copy(serverDir.resolve("ca-cert.pem"), d.resolve("ca-cert.pem"));
        mem = new MemoryTarget(SIZE, false);
        server = new NbdServer(variant(NbdServer.Options.defaults().withTls(NbdTls.load(d, false), true)));
        int port = server.bindTcp("127.0.0.1", 0).getPort();
        server.addExport("e", mem, false);
        qemuImgInfo(port, clientDir).ok("qemu-img info with a converted PKCS#1 key");
    }
}
