package io.qblk.nbd;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.InvalidKeySpecException;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLHandshakeException;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

/**
 * x509 credentials for NBD over TLS, read from a directory laid out as qemu's
 * {@code tls-creds-x509} expects: {@code server-cert.pem} (the server certificate, optionally
 * followed by intermediates), {@code server-key.pem} (its private key, PKCS#8 "PRIVATE KEY";
 * a PKCS#1 "RSA PRIVATE KEY" is converted) and {@code ca-cert.pem} (the CA that signs client
 * certificates; needed only with {@code verifyPeer}). With {@code verifyPeer} a client must present
 * a certificate signed by that CA. TLS 1.3 and 1.2 through the JDK's JSSE; TLS-PSK is not offered
 * (JSSE has no external pre-shared keys).
 *
 * <p>Protocol versions: both by default, except that with {@code verifyPeer} the default is TLS 1.2
 * only. Under TLS 1.3 gnutls clients (qemu, libnbd, nbd-client) choose their certificate from the key
 * types of the CertificateRequest's signature_algorithms; JSSE may list only RSA-PSS, ECDSA and
 * EdDSA schemes there in 1.3 (rsa_pkcs1_* appear in signature_algorithms_cert only), so a gnutls
 * client holding an RSA ("rsaEncryption") certificate sends none. EC and Ed25519 client
 * certificates, and non-gnutls clients with any key, work under 1.3: choose it with
 * {@code protocols} ({@link #parseProtocols}).
 */
public final class NbdTls {
    public static final String CA_CERT = "ca-cert.pem";
    public static final String SERVER_CERT = "server-cert.pem";
    public static final String SERVER_KEY = "server-key.pem";
    private static final Pattern PEM = Pattern.compile("-----BEGIN ([A-Z0-9 ]+)-----([^-]*)-----END \\1-----");

    public static final String TLS13 = "TLSv1.3";
    public static final String TLS12 = "TLSv1.2";

    private final SSLContext context;
    private final boolean verifyPeer;
    private final Path dir;
    private final String[] protocols;

    private NbdTls(SSLContext context, boolean verifyPeer, Path dir, List<String> protocols) {
        this.context = context;
        this.verifyPeer = verifyPeer;
        this.dir = dir;
        this.protocols = protocols.toArray(String[]::new);
    }

    /** Loads {@code dir} with the default protocol versions ({@link #defaultProtocols}). */
    public static NbdTls load(Path dir, boolean verifyPeer) throws IOException {
        return load(dir, verifyPeer, defaultProtocols(verifyPeer));
    }

    /** TLS 1.3 and 1.2; with {@code verifyPeer} TLS 1.2 only (see the class comment). */
    public static List<String> defaultProtocols(boolean verifyPeer) {
        return verifyPeer ? List.of(TLS12) : List.of(TLS13, TLS12);
    }

    /**
     * Parses a comma-separated list of protocol versions ({@code 1.3}, {@code tls1.3} or
     * {@code TLSv1.3}, and the same for 1.2), keeping its order; anything else is an
     * IllegalArgumentException with one line.
     */
    public static List<String> parseProtocols(String list) {
        List<String> out = new ArrayList<>();
        for (String item : list.split(",")) {
            String v = item.trim().toLowerCase(Locale.ROOT).replaceFirst("^tlsv?", "");
            String p = switch (v) {
                case "1.3" -> TLS13;
                case "1.2" -> TLS12;
                default -> throw new IllegalArgumentException("unknown TLS protocol version '" + item.trim()
                        + "' (use 1.3, 1.2 or both: 1.3,1.2)");
            };
            if (!out.contains(p)) out.add(p);
        }
        return List.copyOf(out);
    }

    /** Loads {@code dir}; any problem is an IOException with one line naming the file. */
    public static NbdTls load(Path dir, boolean verifyPeer, List<String> protocols) throws IOException {
        if (protocols.isEmpty()) throw new IOException("no TLS protocol version enabled");
        if (!Files.isDirectory(dir)) throw new IOException(dir + ": TLS credentials directory not found");
        try {
            Certificate[] chain = certificates(dir.resolve(SERVER_CERT)).toArray(Certificate[]::new);
            if (chain.length == 0) throw new IOException(dir.resolve(SERVER_CERT) + ": no certificate in the file");
            PrivateKey key = privateKey(dir.resolve(SERVER_KEY));
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            char[] none = new char[0];
            ks.setKeyEntry("server", key, none, chain);
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, none);
            TrustManagerFactory tmf = null;
            if (verifyPeer) {
                Collection<? extends Certificate> cas = certificates(dir.resolve(CA_CERT));
                if (cas.isEmpty()) throw new IOException(dir.resolve(CA_CERT) + ": no certificate in the file");
                KeyStore ts = KeyStore.getInstance("PKCS12");
                ts.load(null, null);
                int i = 0;
                for (Certificate c : cas) ts.setCertificateEntry("ca" + i++, c);
                tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
                tmf.init(ts);
            }
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(kmf.getKeyManagers(), tmf == null ? null : tmf.getTrustManagers(), null);
            return new NbdTls(ctx, verifyPeer, dir, protocols);
        } catch (GeneralSecurityException e) {
            throw new IOException(dir + ": unusable TLS credentials: " + e.getMessage(), e);
        }
    }

    public boolean verifyPeer() {
        return verifyPeer;
    }

    public Path dir() {
        return dir;
    }

    /** The protocol versions offered, newest first as given. */
    public List<String> protocols() {
        return List.of(protocols);
    }

    private static Collection<? extends Certificate> certificates(Path file) throws IOException, GeneralSecurityException {
        byte[] pem = read(file);
        try {
            return CertificateFactory.getInstance("X.509").generateCertificates(new ByteArrayInputStream(pem));
        } catch (java.security.cert.CertificateException e) {
            throw new IOException(file + ": not a PEM certificate: " + e.getMessage(), e);
        }
    }

    static PrivateKey privateKey(Path file) throws IOException {
        String text = new String(read(file), StandardCharsets.US_ASCII);
        Matcher m = PEM.matcher(text);
        if (!m.find()) throw new IOException(file + ": no PEM private key in the file");
        String type = m.group(1);
        byte[] der;
        try {
            der = Base64.getMimeDecoder().decode(m.group(2).trim());
        } catch (IllegalArgumentException e) {
            throw new IOException(file + ": bad base64 in the PEM block", e);
        }
        byte[] pkcs8 = switch (type) {
            case "PRIVATE KEY" -> der;
            case "RSA PRIVATE KEY" -> rsaPkcs1ToPkcs8(der);
            case "ENCRYPTED PRIVATE KEY" -> throw new IOException(file + ": encrypted private keys are not supported "
                    + "(decrypt it: openssl pkey -in KEY -out " + SERVER_KEY + ")");
            default -> throw new IOException(file + ": unsupported key type '" + type + "' (convert it to PKCS#8: "
                    + "openssl pkey -in KEY -out " + SERVER_KEY + ")");
        };
        for (String alg : new String[] {"RSA", "EC", "Ed25519", "Ed448", "RSASSA-PSS"}) {
            try {
                return KeyFactory.getInstance(alg).generatePrivate(new PKCS8EncodedKeySpec(pkcs8));
            } catch (InvalidKeySpecException | java.security.NoSuchAlgorithmException ignored) {
                // try the next algorithm
            }
        }
        throw new IOException(file + ": private key of an unknown algorithm");
    }

    /** Wraps a PKCS#1 RSAPrivateKey in a PKCS#8 PrivateKeyInfo (version 0, rsaEncryption, NULL). */
    private static byte[] rsaPkcs1ToPkcs8(byte[] pkcs1) {
        byte[] algorithm = {0x30, 0x0d, 0x06, 0x09, 0x2a, (byte) 0x86, 0x48, (byte) 0x86, (byte) 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
        byte[] version = {0x02, 0x01, 0x00};
        byte[] octets = der(0x04, pkcs1);
        byte[] body = new byte[version.length + algorithm.length + octets.length];
        System.arraycopy(version, 0, body, 0, version.length);
        System.arraycopy(algorithm, 0, body, version.length, algorithm.length);
        System.arraycopy(octets, 0, body, version.length + algorithm.length, octets.length);
        return der(0x30, body);
    }

    private static byte[] der(int tag, byte[] content) {
        int n = content.length;
        byte[] len = n < 0x80 ? new byte[] {(byte) n}
                : n < 0x100 ? new byte[] {(byte) 0x81, (byte) n}
                : n < 0x10000 ? new byte[] {(byte) 0x82, (byte) (n >> 8), (byte) n}
                : new byte[] {(byte) 0x83, (byte) (n >> 16), (byte) (n >> 8), (byte) n};
        byte[] out = new byte[1 + len.length + n];
        out[0] = (byte) tag;
        System.arraycopy(len, 0, out, 1, len.length);
        System.arraycopy(content, 0, out, 1 + len.length, n);
        return out;
    }

    private static byte[] read(Path file) throws IOException {
        try {
            return Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new IOException(file + ": missing (a TLS credentials directory holds " + CA_CERT + ", "
                    + SERVER_CERT + ", " + SERVER_KEY + ")");
        }
    }

    /**
     * Runs the server side of a TLS handshake over an accepted, blocking socket channel (after
     * NBD_OPT_STARTTLS was acknowledged) and returns the transport for everything after it.
     */
    Transport handshake(SocketChannel channel) throws IOException {
        Socket plain = channel.socket();
        SSLSocket s = (SSLSocket) context.getSocketFactory().createSocket(plain, null, plain.getPort(), false);
        s.setUseClientMode(false);
        if (verifyPeer) s.setNeedClientAuth(true);
        s.setEnabledProtocols(protocols);
        try {
            s.startHandshake();
        } catch (SSLHandshakeException e) {
            // The certificate_required alert exists in TLS 1.3 only (1.2 says bad_certificate).
            if (verifyPeer && String.valueOf(e.getMessage()).contains("(certificate_required)"))
                throw new SSLHandshakeException(e.getMessage() + " under TLS 1.3 (if the client has an RSA "
                        + "certificate: gnutls clients such as qemu and libnbd do not send one to this server under "
                        + "1.3; use an EC or Ed25519 client key, or TLS 1.2)");
            throw e;
        }
        return new TlsTransport(s);
    }

    /** How a connection reads and writes bytes: the plain socket channel, or TLS on top of it. */
    interface Transport {
        /** Reads at least one byte; -1 at end of stream. */
        int read(ByteBuffer dst) throws IOException;

        /** Writes some bytes of {@code srcs} (all of them for TLS); returns how many. */
        long write(ByteBuffer[] srcs) throws IOException;

        boolean tls();
    }

    static final class PlainTransport implements Transport {
        private final SocketChannel channel;

        PlainTransport(SocketChannel channel) { this.channel = channel; }

        @Override public int read(ByteBuffer dst) throws IOException { return channel.read(dst); }

        @Override public long write(ByteBuffer[] srcs) throws IOException { return channel.write(srcs); }

        @Override public boolean tls() { return false; }
    }

    /** TLS through an SSLSocket layered on the channel's socket; one heap bounce buffer each way. */
    static final class TlsTransport implements Transport {
        private static final int CHUNK = 64 << 10;
        private final InputStream in;
        private final OutputStream out;
        private final byte[] readChunk = new byte[CHUNK];
        private final byte[] writeChunk = new byte[CHUNK];

        TlsTransport(SSLSocket socket) throws IOException {
            this.in = socket.getInputStream();
            this.out = socket.getOutputStream();
        }

        @Override
        public int read(ByteBuffer dst) throws IOException {
            int n = in.read(readChunk, 0, Math.min(CHUNK, dst.remaining()));
            if (n > 0) dst.put(readChunk, 0, n);
            return n;
        }

        @Override
        public synchronized long write(ByteBuffer[] srcs) throws IOException {
            long total = 0;
            for (ByteBuffer b : srcs) {
                while (b.hasRemaining()) {
                    int n = Math.min(CHUNK, b.remaining());
                    b.get(writeChunk, 0, n);
                    out.write(writeChunk, 0, n);
                    total += n;
                }
            }
            out.flush();
            return total;
        }

        @Override public boolean tls() { return true; }
    }
}
