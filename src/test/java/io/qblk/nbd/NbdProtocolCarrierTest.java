package io.qblk.nbd;

/** {@link NbdProtocolTest} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdProtocolCarrierTest extends NbdProtocolTest implements NbdVariant.OnCarrier {
}
