package io.qblk.nbd;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * openssl-made x509 credentials in qemu's tls-creds-x509 layout for the NBD TLS tests: a CA (EC
 * P-256), a server certificate for IP 127.0.0.1, and client directories: {@code client} (CA only),
 * {@code clientCert} (an RSA client certificate), {@code ecClientCert} (an EC P-256 one) and
 * {@code foreignClientCert} (an RSA client certificate signed by another CA).
 */
public final class TestCerts {
    public final Path server, client, clientCert, ecClientCert, foreignClientCert;
    private final Path root;

    private TestCerts(Path root) throws Exception {
        this.root = root;
        server = Files.createDirectories(root.resolve("server"));
        client = Files.createDirectories(root.resolve("client"));
        clientCert = Files.createDirectories(root.resolve("client-with-cert"));
        ecClientCert = Files.createDirectories(root.resolve("client-with-ec-cert"));
        foreignClientCert = Files.createDirectories(root.resolve("client-with-foreign-cert"));
        Path ca = root.resolve("ca-key.pem"), caCert = server.resolve("ca-cert.pem");
        makeCa(ca, caCert, "qblk test CA");
        for (Path d : List.of(client, clientCert, ecClientCert, foreignClientCert)) Files.copy(caCert, d.resolve("ca-cert.pem"));
        issue(ca, caCert, "RSA", server.resolve("server-key.pem"), server.resolve("server-cert.pem"), "127.0.0.1",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n");
        String clientExt = "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n";
        issue(ca, caCert, "RSA", clientCert.resolve("client-key.pem"), clientCert.resolve("client-cert.pem"), "qblk client", clientExt);
        issue(ca, caCert, "EC", ecClientCert.resolve("client-key.pem"), ecClientCert.resolve("client-cert.pem"), "qblk ec client",
                "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n");
        Path otherCa = root.resolve("other-ca-key.pem"), otherCaCert = root.resolve("other-ca-cert.pem");
        makeCa(otherCa, otherCaCert, "another CA");
        issue(otherCa, otherCaCert, "RSA", foreignClientCert.resolve("client-key.pem"), foreignClientCert.resolve("client-cert.pem"),
                "qblk foreign client", clientExt);
    }

    public static TestCerts make(Path root) throws Exception {
        return new TestCerts(root);
    }

    private static void makeCa(Path key, Path cert, String cn) throws Exception {
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key.toString());
        openssl("req", "-x509", "-new", "-key", key.toString(), "-subj", "/CN=" + cn, "-days", "2", "-out", cert.toString());
    }

    /** A key (PKCS#8, as openssl genpkey writes it) and a certificate signed by the CA. */
    private void issue(Path caKey, Path caCert, String alg, Path key, Path cert, String cn, String ext) throws Exception {
        if (alg.equals("EC")) openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key.toString());
        else openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key.toString());
        String base = cn.replace(' ', '_');
        Path csr = root.resolve(base + ".csr"), extFile = root.resolve(base + ".ext");
        Files.writeString(extFile, ext);
        openssl("req", "-new", "-key", key.toString(), "-subj", "/CN=" + cn, "-out", csr.toString());
        openssl("x509", "-req", "-in", csr.toString(), "-CA", caCert.toString(), "-CAkey", caKey.toString(), "-CAcreateserial",
                "-days", "2", "-extfile", extFile.toString(), "-out", cert.toString());
    }

    public static void openssl(String... args) throws Exception {
        List<String> c = new ArrayList<>(List.of("openssl"));
        c.addAll(List.of(args));
        Proc.run(60, c).ok("openssl " + args[0]);
    }

    /**
     * {@code qemu-img info} of export {@code e} on 127.0.0.1:{@code port} over TLS with the client
     * credentials in {@code creds}; {@code priority} (a gnutls priority string, e.g. to force one
     * TLS version) when not null.
     */
    public static Proc.Result qemuImgInfo(int port, Path creds, String priority) throws Exception {
        return Proc.run(60, "qemu-img", "info", "--object", "tls-creds-x509,id=t,dir=" + creds + ",endpoint=client"
                        + (priority == null ? "" : ",priority=" + priority),
                "--image-opts", "driver=nbd,host=127.0.0.1,port=" + port + ",export=e,tls-creds=t");
    }

    public static final String ONLY_TLS13 = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
    public static final String ONLY_TLS12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
}
