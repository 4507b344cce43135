/** Hot-plug takes a USB printer-class node (a Zebra on /dev/usb/lp0) when an auto_detect rule allows it. */
import { describe, expect, it } from 'vitest';
import { drivers } from '../../drivers/index.ts';
import { decide, presentDevices } from '../../src/extensions/hot-plug.ts';
import type { PortListing } from '../../src/transports/discovery.ts';

const listing: PortListing = {
  serial: [],
  hid: [],
  printers: [{ path: '/dev/usb/lp0', vendorId: '0a5f', productId: '0080', manufacturer: 'Zebra Technologies', product: 'ZTC GK420d', serialNumber: '28J123456789', drivers: ['zebra-zpl'] }],
  problems: [],
};

describe('hot-plug of USB printers', () => {
  it('a rule naming zebra-zpl takes the node, with the usb-printer transport and an id from its serial', () => {
    const [present] = presentDevices(listing);
    expect(present).toMatchObject({ key: 'usb-printer:/dev/usb/lp0', kind: 'usb-printer', usb: '0a5f:0080' });
    const decision = decide(present!, [{ driver: 'zebra-zpl' }], drivers, [], {});
    expect(decision).toEqual({
      take: true,
      device: { id: 'zebra-zpl-28J123456789', driver: 'zebra-zpl', transport: { type: 'usb-printer', path: '/dev/usb/lp0' } },
    });
  });

  it('is not taken without a rule, nor when a configured printer owns the node', () => {
    const [present] = presentDevices(listing);
    expect(decide(present!, [], drivers, [], {})).toEqual({ take: false, reason: 'not-allowed' });
    const configured = [{ id: 'draw-1', driver: 'zebra-zpl', transport: { type: 'usb-printer' as const, path: '/dev/usb/lp0' } }];
    expect(decide(present!, [{ driver: 'zebra-zpl' }], drivers, configured, {})).toEqual({ take: false, reason: 'configured' });
  });
});
