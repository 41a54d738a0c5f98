package io.qblk.nbd;

/** {@link NbdProtocolTest} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdProtocolCarrierTest extends NbdProtocolTest {
    @Override
    NbdServer.Options variant(NbdServer.Options o) {
        return o.withCarrier(true);
    }
}
